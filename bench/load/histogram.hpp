#pragma once
// A log-linear histogram of non-negative integers (nanoseconds here), in the manner of
// HdrHistogram: values below 64 are exact; above, every power of two is split into 32 equal
// buckets, so a reported percentile is within 1/64 (1.6 %) of the true value. Fixed size
// (1920 counters, 15 KiB), O(1) record, no allocation per sample: a run of millions of
// messages costs the same memory as a run of ten, and recording never perturbs the loop.

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace atoll_load {

class histogram {
 public:
  static constexpr int sub_bits = 5;  // 32 buckets per power of two
  static constexpr std::uint64_t sub = 1u << sub_bits;
  static constexpr std::size_t bucket_count = (64 - sub_bits) * sub + sub;

  void record(std::int64_t value) noexcept {
    const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(value, 0));
    ++counts_[index_of(v)];
    ++count_;
    sum_ += v;
    max_ = std::max(max_, v);
    min_ = std::min(min_, v);
  }

  void merge(const histogram& o) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
  }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t max() const noexcept { return count_ ? max_ : 0; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  double mean() const noexcept { return count_ ? double(sum_) / double(count_) : 0.0; }

  // The value at percentile `p` (0..100), nearest rank: the midpoint of the bucket holding
  // that rank, clamped to the exact extremes.
  std::uint64_t percentile(double p) const noexcept {
    if (count_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(p / 100.0 * double(count_) + 0.999999);
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    if (rank == count_) return max();  // the largest value is known exactly
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(midpoint_of(i), min(), max());
    }
    return max();
  }

 private:
  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < 2 * sub) return static_cast<std::size_t>(v);
    const int e = 63 - std::countl_zero(v);  // position of the top bit, >= sub_bits + 1
    const int shift = e - sub_bits;
    return static_cast<std::size_t>(std::uint64_t(shift) * sub + (v >> shift));
  }
  static std::uint64_t midpoint_of(std::size_t i) noexcept {
    if (i < 2 * sub) return i;
    const std::uint64_t shift = i / sub - 1;
    const std::uint64_t mantissa = i % sub + sub;
    return (mantissa << shift) + ((std::uint64_t{1} << shift) >> 1);
  }

  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
};

}  // namespace atoll_load
