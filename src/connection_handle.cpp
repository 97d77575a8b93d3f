// connection_handle: the thread-safe reference to a connection. Every call posts to the
// connection's io thread and runs there inside the connection's entry guard (run_guarded), so
// cross-thread work obeys the same finishing rule as the connection's own callbacks.

#include <asio/post.hpp>

#include <utility>
#include <vector>

#include "atoll/connection.hpp"
#include "connection_impl.hpp"

namespace atl {

namespace {

// Posts `fn(connection_impl&)` to the connection's thread if it still exists. The shared_ptr
// is moved into the posted work, so the connection can only be destroyed on its own thread
// (or after the io threads have ended).
template <class F>
bool post_to(const std::weak_ptr<detail::connection_impl>& weak, F&& fn) {
  auto p = weak.lock();
  if (!p) return false;
  auto ex = p->io_executor();
  asio::post(ex, [p = std::move(p), fn = std::forward<F>(fn)]() mutable { fn(*p); });
  return true;
}

}  // namespace

bool connection_handle::send(std::span<const std::byte> bytes) const {
  return post_to(impl_, [copy = std::vector<std::byte>(bytes.begin(), bytes.end())](
                            detail::connection_impl& c) {
    c.run_guarded("connection_handle::send", [&] { c.send(copy); });
  });
}

bool connection_handle::send(std::string_view text) const {
  return send(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

bool connection_handle::close() const {
  return post_to(impl_, [](detail::connection_impl& c) {
    c.run_guarded("connection_handle::close", [&] { c.close(); });
  });
}

bool connection_handle::abort() const {
  return post_to(impl_, [](detail::connection_impl& c) {
    c.run_guarded("connection_handle::abort", [&] { c.abort(); });
  });
}

bool connection_handle::dispatch(std::function<void(connection&)> fn) const {
  if (!fn) return false;
  return post_to(impl_, [fn = std::move(fn)](detail::connection_impl& c) {
    c.run_guarded("connection_handle::dispatch", [&] {
      if (c.is_open()) fn(c);
    });
  });
}

bool connection_handle::expired() const noexcept { return impl_.expired(); }

}  // namespace atl
