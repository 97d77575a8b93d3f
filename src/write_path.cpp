#include "write_path.hpp"

#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace atl::detail {

namespace {
// Bytes read from a file per step when it cannot go through sendfile(2) (TLS), and the most
// one sendfile(2) call is asked for (so one big file does not starve the thread).
constexpr std::size_t file_chunk = 64 * 1024;
constexpr std::size_t sendfile_step = 1024 * 1024;
}  // namespace

io_result write_path::write(transport& tx, int fd, std::span<const std::byte> data,
                            bool may_write) {
  if (files_ && !files_->list.empty()) {
    // After a file: kept in order behind it; the file's own wait carries it.
    auto& after = files_->list.back().after;
    after.insert(after.end(), data.begin(), data.end());
    files_->after_bytes += data.size();
    return {io_status::done};
  }
  if (!may_write) {
    queue_.append(data);
    return {io_status::done};
  }
  std::size_t sent = 0;
  if (queue_.empty()) {
    const io_result r = tx.write(fd, data);
    if (r.status == io_status::failed) return r;
    if (r.n == data.size()) return {io_status::done, r.n};
    queue_.append(data.subspan(r.n));
    if (r.status == io_status::want_write) return r;
    sent = r.n;
  } else {
    queue_.append(data);  // behind bytes no wait carries (not expected; never left unsent)
  }
  // The transport writes through the queue (TLS): flush it now.
  io_result r = flush_queue(tx, fd, sent);
  r.n = sent;
  return r;
}

void write_path::add_file(unique_fd fd, std::uint64_t offset, std::uint64_t length) {
  if (!files_) files_ = std::make_unique<file_list>();
  files_->list.push_back(file_segment{std::move(fd), offset, length, {}});
}

io_result write_path::flush_queue(transport& tx, int fd, std::size_t& sent) {
  while (!queue_.empty()) {
    const io_result r = tx.write_queued(fd, queue_);
    if (r.status != io_status::done) return r;
    queue_.consume(r.n);
    sent += r.n;
  }
  return {io_status::done};
}

io_result write_path::flush(transport& tx, int fd) {
  std::size_t sent = 0;
  for (;;) {
    io_result r = flush_queue(tx, fd, sent);
    if (r.status == io_status::done && files_ && !files_->list.empty()) {
      r = flush_file(tx, fd, sent);
      if (r.status == io_status::done) continue;
    }
    r.n = sent;
    return r;
  }
}

io_result write_path::flush_file(transport& tx, int fd, std::size_t& sent) {
  file_segment& f = files_->list.front();
  if (f.remaining == 0) {
    files_->after_bytes -= f.after.size();
    if (!f.after.empty()) queue_.append(f.after);
    files_->list.pop_front();
    return {io_status::done};
  }
  if (!tx.sends_files()) {
    thread_local std::array<std::byte, file_chunk> chunk;
    for (;;) {
      const ssize_t n = ::pread(f.fd.get(), chunk.data(),
                                static_cast<std::size_t>(std::min<std::uint64_t>(f.remaining, file_chunk)),
                                static_cast<off_t>(f.offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return {io_status::failed, 0, n == 0 ? EIO : errno};  // 0: truncated under us
      queue_.append({chunk.data(), static_cast<std::size_t>(n)});
      f.offset += static_cast<std::uint64_t>(n);
      f.remaining -= static_cast<std::uint64_t>(n);
      return {io_status::done};
    }
  }
  while (f.remaining > 0) {
    off_t off = static_cast<off_t>(f.offset);
    const ssize_t n = ::sendfile(
        fd, f.fd.get(), &off,
        static_cast<std::size_t>(std::min<std::uint64_t>(f.remaining, sendfile_step)));
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      f.offset += static_cast<std::uint64_t>(n);
      f.remaining -= static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return {io_status::want_write};
    return {io_status::failed, 0, n == 0 ? EIO : errno};
  }
  return {io_status::done};
}

void write_path::clear() noexcept {
  queue_.clear();
  files_.reset();
}

}  // namespace atl::detail
