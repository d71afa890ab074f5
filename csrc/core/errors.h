// Errors raised by hipgrad's native code. Each kind maps onto one Python exception in bindings.cpp:
// ValueError, TypeError, MemoryError, IndexError, NotImplementedError, and hipgrad.BackendError
// (a RuntimeError that carries .library, .status, .call and .location of a failed vendor/runtime call).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace hg {

enum class ErrorKind { value, type, memory, index, not_implemented, backend };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// A failed call into a runtime or library (HIP/CUDA, rocBLAS/cuBLAS, MIOpen/cuDNN, BLAS).
class BackendError : public Error {
 public:
  BackendError(std::string library, long long status, std::string call, std::string location,
               std::string detail)
      : Error(ErrorKind::backend, library + " error " + std::to_string(status) + " (" + detail +
                                      ") in " + call + " at " + location),
        library(std::move(library)), status(status), call(std::move(call)),
        location(std::move(location)), detail(std::move(detail)) {}
  std::string library;
  long long status;
  std::string call;
  std::string location;
  std::string detail;
};

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

template <class... Parts>
[[noreturn]] void fail(ErrorKind kind, const Parts&... parts) {
  throw Error(kind, cat(parts...));
}

}  // namespace hg

#define HG_STRINGIFY2(x) #x
#define HG_STRINGIFY(x) HG_STRINGIFY2(x)
#define HG_LOCATION __FILE__ ":" HG_STRINGIFY(__LINE__)

// Argument checks: HG_REQUIRE(cond, "conv2d: w has ", c, " channels ...") raises ValueError.
#define HG_REQUIRE(cond, ...) \
  do {                        \
    if (!(cond)) ::hg::fail(::hg::ErrorKind::value, __VA_ARGS__); \
  } while (0)
#define HG_REQUIRE_TYPE(cond, ...) \
  do {                             \
    if (!(cond)) ::hg::fail(::hg::ErrorKind::type, __VA_ARGS__); \
  } while (0)
