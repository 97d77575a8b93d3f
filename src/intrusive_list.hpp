#pragma once
// A minimal intrusive doubly-linked list: membership costs two pointers in the element and no
// allocation (per-thread connection registry and read-timeout queues; STYLE.md habit 5).

#include <cstddef>

namespace atl::detail {

template <class Tag>
struct list_node {
  list_node* prev = nullptr;
  list_node* next = nullptr;
  bool linked() const noexcept { return next != nullptr; }
};

// T must derive from list_node<Tag>. Not thread-safe: one owner thread.
template <class T, class Tag>
class intrusive_list {
 public:
  using node = list_node<Tag>;

  intrusive_list() noexcept { head_.prev = head_.next = &head_; }
  intrusive_list(const intrusive_list&) = delete;
  intrusive_list& operator=(const intrusive_list&) = delete;

  bool empty() const noexcept { return head_.next == &head_; }
  std::size_t size() const noexcept { return size_; }

  void push_back(T& t) noexcept {
    node& n = t;
    n.prev = head_.prev;
    n.next = &head_;
    head_.prev->next = &n;
    head_.prev = &n;
    ++size_;
  }

  // Unlinks `t` if it is linked (in this list: callers keep one list per tag per element).
  void erase(T& t) noexcept {
    node& n = t;
    if (!n.linked()) return;
    n.prev->next = n.next;
    n.next->prev = n.prev;
    n.prev = n.next = nullptr;
    --size_;
  }

  T* front() noexcept { return empty() ? nullptr : static_cast<T*>(head_.next); }

  // Calls f(T&) for each element; f must not unlink elements other than the current one.
  template <class F>
  void for_each(F&& f) {
    for (node* n = head_.next; n != &head_;) {
      node* next = n->next;
      f(*static_cast<T*>(n));
      n = next;
    }
  }

 private:
  node head_;
  std::size_t size_ = 0;
};

}  // namespace atl::detail
