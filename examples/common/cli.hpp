#pragma once
// Command-line flags shared by the example servers: `--name value` or `--name=value`, a
// generated `--help`, and a bad value or unknown flag → a message naming the flag, exit 2.
// Header-only and dependency-free so each example stays one readable main.cpp.

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace example {

class cli {
 public:
  cli(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  void add(std::string name, std::string help, std::string& target) {
    add_flag(std::move(name), std::move(help), target, "TEXT", [&target](std::string_view v) {
      target = std::string(v);
      return true;
    });
  }
  void add(std::string name, std::string help, std::uint16_t& target) {
    add_number(std::move(name), std::move(help), target, "PORT");
  }
  void add(std::string name, std::string help, std::size_t& target) {
    add_number(std::move(name), std::move(help), target, "N");
  }
  void add(std::string name, std::string help, std::chrono::milliseconds& target) {
    flags_.push_back({std::move(name), std::move(help), "MS", std::to_string(target.count()),
                      [&target](std::string_view v) {
                        long long ms = 0;
                        if (!parse_integer(v, ms) || ms < 0) return false;
                        target = std::chrono::milliseconds(ms);
                        return true;
                      },
                      false});
  }
  // A switch: present = true.
  void add(std::string name, std::string help, bool& target) {
    flags_.push_back({std::move(name), std::move(help), "", target ? "on" : "off",
                      [&target](std::string_view) {
                        target = true;
                        return true;
                      },
                      true});
  }

  // Parses argv; prints help and exits 0 on --help, exits 2 on a bad flag.
  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        print_help();
        std::exit(0);
      }
      std::string_view value;
      bool has_value = false;
      if (auto eq = arg.find('='); eq != std::string_view::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_value = true;
      }
      const flag* f = find(arg);
      if (f == nullptr) fail(arg, "", "a known flag");
      if (!f->is_switch && !has_value) {
        if (i + 1 >= argc) fail(arg, "", "a value");
        value = argv[++i];
      }
      if (!f->set(value)) fail(arg, value, f->metavar == "PORT" ? "a port 0-65535" : "a number >= 0");
    }
  }

  void print_help() const {
    std::printf("usage: %s [flags]\n%s\n\n", program_.c_str(), summary_.c_str());
    for (const auto& f : flags_) {
      std::string left = f.name + (f.is_switch ? "" : " " + f.metavar);
      std::printf("  %-24s %s (default %s)\n", left.c_str(), f.help.c_str(),
                  f.default_text.empty() ? "none" : f.default_text.c_str());
    }
    std::printf("  %-24s %s\n", "--help", "show this text");
  }

 private:
  struct flag {
    std::string name, help, metavar, default_text;
    std::function<bool(std::string_view)> set;
    bool is_switch = false;
  };

  template <class T>
  static bool parse_integer(std::string_view v, T& out) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    return ec == std::errc() && p == v.data() + v.size();
  }

  template <class T>
  void add_number(std::string name, std::string help, T& target, std::string metavar) {
    flags_.push_back({std::move(name), std::move(help), std::move(metavar),
                      std::to_string(target), [&target](std::string_view v) {
                        return parse_integer(v, target);
                      },
                      false});
  }

  template <class T, class F>
  void add_flag(std::string name, std::string help, const T& target, std::string metavar, F set) {
    flags_.push_back({std::move(name), std::move(help), std::move(metavar), target, set, false});
  }

  const flag* find(std::string_view name) const {
    for (const auto& f : flags_)
      if (f.name == name) return &f;
    return nullptr;
  }

  [[noreturn]] void fail(std::string_view flag, std::string_view value,
                         std::string_view expected) const {
    std::fprintf(stderr, "%s: %.*s: expected %.*s, got '%.*s' (see --help)\n", program_.c_str(),
                 int(flag.size()), flag.data(), int(expected.size()), expected.data(),
                 int(value.size()), value.data());
    std::exit(2);
  }

  std::string program_, summary_;
  std::vector<flag> flags_;
};

}  // namespace example
