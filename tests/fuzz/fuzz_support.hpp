#pragma once
// Small helpers shared by the libFuzzer targets: a reader over the fuzzer's input that hands
// out configuration bytes, and a check macro that aborts (so libFuzzer records the input)
// when an invariant is broken.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#define ATOLL_FUZZ_CHECK(cond)                                                          \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

namespace atoll_fuzz {

// Takes configuration bytes from the front of the input; what is left is the payload.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

  std::uint8_t take_byte() noexcept {
    if (size_ == 0) return 0;
    --size_;
    return *data_++;
  }

  std::span<const std::byte> rest() const noexcept {
    return {reinterpret_cast<const std::byte*>(data_), size_};
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

}  // namespace atoll_fuzz
