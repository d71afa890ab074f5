#include "bind.h"

namespace hg {

void bind_errors(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const BackendError& e) {
      py::object cls = py::module_::import("hipgrad.errors").attr("BackendError");
      py::object err = cls(e.what(), e.library, e.status, e.call, e.location);
      PyErr_SetObject(cls.ptr(), err.ptr());
    } catch (const Error& e) {
      PyObject* type = PyExc_RuntimeError;
      switch (e.kind()) {
        case ErrorKind::value: type = PyExc_ValueError; break;
        case ErrorKind::type: type = PyExc_TypeError; break;
        case ErrorKind::memory: type = PyExc_MemoryError; break;
        case ErrorKind::index: type = PyExc_IndexError; break;
        case ErrorKind::not_implemented: type = PyExc_NotImplementedError; break;
        case ErrorKind::backend: type = PyExc_RuntimeError; break;
      }
      PyErr_SetString(type, e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "hipgrad: out of host memory");
    } catch (const std::length_error&) {  // a std::vector asked for more than max_size()
      PyErr_SetString(PyExc_MemoryError, "hipgrad: out of host memory (a buffer larger than the "
                                         "address space was requested)");
    }
  });
  (void)m;
}

}  // namespace hg
