#pragma once
// Short-lived attempts (connect → send a request → wait for the reply → close), as used by
// churn, the overload extra clients and health probes; and held connections (connect, verify
// with a 1-byte echo, keep open, check again on demand), as used by overload and idle; held
// connections optionally over TLS (idle --tls) and optionally upgraded to WebSocket instead of
// the echo (idle --ws).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "echo_wire.hpp"
#include "tls_stream.hpp"

namespace atoll_load {

class attempt;

// What an attempt sends and how long it may take.
struct attempt_spec {
  const target* to = nullptr;
  source_addresses* from = nullptr;
  std::string request;         // sent once connected
  std::size_t reply_size = 1;  // bytes that make the reply complete
  std::int64_t timeout_ns = 2 * s_ns;
};

struct attempt_listener {
  virtual ~attempt_listener() = default;
  virtual void on_connected(attempt&, std::int64_t /*now*/) {}
  // Called exactly once per attempt, with its outcome; the attempt's fd is already closed.
  virtual void on_done(attempt&, outcome, std::int64_t now) = 0;
};

class attempt final : public pollable {
 public:
  std::int64_t started() const noexcept { return started_; }
  std::int64_t connected_at() const noexcept { return connected_; }  // 0 if never connected
  bool connected() const noexcept { return connected_ != 0; }
  int tag = 0;  // the owner's label (lane, kind)

  void on_event(std::uint32_t events) override;

 private:
  friend class attempt_pool;
  void finish(outcome o, std::int64_t now);
  void on_connect_ready(std::int64_t now);

  class attempt_pool* pool_ = nullptr;
  const attempt_spec* spec_ = nullptr;
  attempt_listener* listener_ = nullptr;
  int fd_ = -1;
  std::int64_t started_ = 0;
  std::int64_t connected_ = 0;
  std::int64_t deadline_ = 0;
  std::size_t got_ = 0;
  std::size_t live_index_ = 0;
  bool done_ = true;
};

// Owns attempts: starts them, expires them, and recycles finished ones between loop batches
// (an event for a closed fd may still be in the batch being dispatched).
class attempt_pool {
 public:
  explicit attempt_pool(event_loop& loop) : loop_(loop) {}
  // Starts an attempt; its outcome may be reported before this returns (immediate failure).
  attempt* start(const attempt_spec& spec, attempt_listener& l, int tag, std::int64_t now);
  // Times out attempts past their deadline.
  void expire(std::int64_t now);
  // Recycles finished attempts; call between loop batches only.
  void collect();
  std::size_t outstanding() const noexcept { return live_.size(); }

 private:
  friend class attempt;
  void retire(attempt& a);

  event_loop& loop_;
  std::vector<std::unique_ptr<attempt>> all_;
  std::vector<attempt*> free_;
  std::vector<attempt*> retired_;
  std::vector<attempt*> live_;
};

// A connection kept open: established (with `tls`: TLS handshake done) and verified with a
// 1-byte echo, then checked again with check() whenever its owner wants (overload: are held
// connections still answered?). With `upgrade` (a wire's handshake, e.g. make_ws_upgrade_wire)
// it is verified by that handshake's accepted reply instead, and never sent anything after it.
class held_conn final : public pollable {
 public:
  enum class state : std::uint8_t {
    connecting,
    tls_handshaking,
    upgrading,
    verifying,
    idle,
    checking,
    lost
  };

  held_conn(event_loop& loop, const target& to, source_addresses& from, SSL_CTX* tls = nullptr,
            const echo_wire* upgrade = nullptr)
      : loop_(loop), to_(to), from_(from), tls_(tls), upgrade_(upgrade) {}
  ~held_conn() override { close(); }
  held_conn(const held_conn&) = delete;
  held_conn& operator=(const held_conn&) = delete;

  // Starts connecting; false (and state lost) if the connect failed at once.
  bool open(std::int64_t now);
  // Sends one byte to be echoed; false if not idle, or upgraded (a byte is no frame).
  bool check(std::int64_t now);
  void close() noexcept;

  state current() const noexcept { return state_; }
  outcome lost_because() const noexcept { return lost_because_; }
  std::int64_t opened_at() const noexcept { return opened_; }
  // Round-trip times of verify and check echoes (with `upgrade`: of the handshake), ns.
  histogram& rtt() noexcept { return rtt_; }
  std::uint64_t answered() const noexcept { return answered_; }

  void on_event(std::uint32_t events) override;

 private:
  void lose(outcome why);
  void send_probe(std::int64_t now);
  void tls_step(std::int64_t now);
  // Connected (and TLS done): the upgrade request if there is one, else the probe.
  void verify(std::int64_t now);
  void read_upgrade_reply(std::int64_t now);

  event_loop& loop_;
  const target& to_;
  source_addresses& from_;
  SSL_CTX* tls_;
  const echo_wire* upgrade_;
  int fd_ = -1;
  byte_stream io_;
  state state_ = state::lost;
  outcome lost_because_ = outcome::served;
  std::int64_t opened_ = 0;
  std::int64_t probe_sent_ = 0;  // (or the upgrade request)
  std::string upgrade_reply_;    // the reply to the upgrade request so far; freed once accepted
  histogram rtt_;
  std::uint64_t answered_ = 0;
};

}  // namespace atoll_load
