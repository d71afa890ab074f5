// hipgrad._C.Tensor: construction from NumPy (a copy), .numpy() (a copy), DLPack both ways
// (zero-copy for CPU data), device moves.
#include <cstring>

#include "bind.h"
#include "dlpack.h"

namespace hg {
namespace {

DType dtype_from_numpy(const py::dtype& dt) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) return DType::f32;
  if (kind == 'i' && size == 8) return DType::i64;
  if (kind == 'i' && size == 4) return DType::i32;
  if (kind == 'i' && size == 1) return DType::i8;
  if (kind == 'u' && size == 1) return DType::u8;
  fail(ErrorKind::type, "dtype must be one of float32, int64, int32, int8, uint8; got ",
       std::string(py::str(dt)));
}

py::dtype numpy_dtype(DType d) { return py::dtype(dtype_name(d)); }

Tensor from_numpy(const py::array& arr, const std::string& device) {
  const DType dtype = dtype_from_numpy(arr.dtype());
  const Device dev = Device::parse(device);
  py::array c = py::array::ensure(arr, py::array::c_style | py::array::forcecast);
  Shape shape(c.shape(), c.shape() + c.ndim());
  Tensor t = empty(shape, dtype, dev);
  if (t.nbytes() > 0) {
    const void* src = c.data();
    py::gil_scoped_release release;
    backend_for(dev).copy(t.raw(), dev, src, Device{}, t.nbytes());
  }
  return t;
}

py::array to_numpy(const Tensor& t) {
  py::array out(numpy_dtype(t.dtype()), std::vector<py::ssize_t>(t.shape().begin(), t.shape().end()));
  if (t.nbytes() > 0) {
    void* dst = out.mutable_data();
    py::gil_scoped_release release;
    if (t.device().is_gpu()) backend_for(t.device()).synchronize(t.device().index);
    backend_for(t.device()).copy(dst, Device{}, t.raw(), t.device(), t.nbytes());
  }
  return out;
}

// ---- DLPack ----------------------------------------------------------------------------------
// Both capsule kinds: "dltensor_versioned" (DLPack >= 1.0, writable views in NumPy) when the
// consumer passes max_version >= (1, 0), the legacy "dltensor" otherwise.
struct DLContext {
  Tensor tensor;  // keeps the storage alive while the consumer holds the capsule
  std::vector<int64_t> shape, strides;
  HgDLManagedTensor legacy;
  HgDLManagedTensorVersioned versioned;
};

HgDLDataType dl_dtype(DType d) {
  switch (d) {
    case DType::f32: return {kHgDLFloat, 32, 1};
    case DType::i64: return {kHgDLInt, 64, 1};
    case DType::i32: return {kHgDLInt, 32, 1};
    case DType::i8: return {kHgDLInt, 8, 1};
    case DType::u8: return {kHgDLUInt, 8, 1};
  }
  return {kHgDLFloat, 32, 1};
}

DType dtype_from_dl(HgDLDataType t) {
  if (t.lanes == 1) {
    if (t.code == kHgDLFloat && t.bits == 32) return DType::f32;
    if (t.code == kHgDLInt && t.bits == 64) return DType::i64;
    if (t.code == kHgDLInt && t.bits == 32) return DType::i32;
    if (t.code == kHgDLInt && t.bits == 8) return DType::i8;
    if (t.code == kHgDLUInt && t.bits == 8) return DType::u8;
  }
  fail(ErrorKind::type, "from_dlpack: unsupported dtype (code ", int(t.code), ", bits ",
       int(t.bits), ", lanes ", t.lanes, "); expected float32, int64, int32, int8 or uint8");
}

int gpu_dl_device_type() {
#if defined(HIPGRAD_GPU_CUDA)
  return kHgDLCUDA;
#else
  return kHgDLROCM;
#endif
}

void legacy_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor")) {  // never consumed: we still own it
    auto* m = static_cast<HgDLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    m->deleter(m);
  }
}

void versioned_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor_versioned")) {
    auto* m = static_cast<HgDLManagedTensorVersioned*>(
        PyCapsule_GetPointer(capsule, "dltensor_versioned"));
    m->deleter(m);
  }
}

py::capsule to_dlpack(const Tensor& t, bool versioned) {
  if (t.device().is_gpu()) backend_for(t.device()).synchronize(t.device().index);
  auto* ctx = new DLContext{t, t.shape(), {}, {}, {}};
  ctx->strides.assign(t.shape().size(), 1);
  for (int64_t i = t.dim() - 2; i >= 0; --i) ctx->strides[i] = ctx->strides[i + 1] * t.shape()[i + 1];
  HgDLTensor dl;
  dl.data = t.raw();
  dl.device = {t.device().is_cpu() ? kHgDLCPU : gpu_dl_device_type(), t.device().index};
  dl.ndim = static_cast<int32_t>(t.dim());
  dl.dtype = dl_dtype(t.dtype());
  dl.shape = ctx->shape.data();
  dl.strides = ctx->strides.data();
  dl.byte_offset = 0;
  PyObject* cap = nullptr;
  if (versioned) {
    ctx->versioned = {{1, 0}, ctx, [](HgDLManagedTensorVersioned* self) {
                        delete static_cast<DLContext*>(self->manager_ctx);
                      }, 0, dl};
    cap = PyCapsule_New(&ctx->versioned, "dltensor_versioned", versioned_capsule_destructor);
  } else {
    ctx->legacy = {dl, ctx, [](HgDLManagedTensor* self) {
                     delete static_cast<DLContext*>(self->manager_ctx);
                   }};
    cap = PyCapsule_New(&ctx->legacy, "dltensor", legacy_capsule_destructor);
  }
  if (!cap) {
    delete ctx;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(cap);
}

// Copies a strided CPU block into contiguous memory, one element size at a time.
void gather_strided(char* dst, const char* src, const int64_t* shape, const int64_t* strides,
                    int ndim, size_t esize) {
  if (ndim == 0) {
    std::memcpy(dst, src, esize);
    return;
  }
  int64_t inner = 1;
  for (int i = 1; i < ndim; ++i) inner *= shape[i];
  for (int64_t i = 0; i < shape[0]; ++i)
    gather_strided(dst + i * inner * esize, src + i * strides[0] * esize, shape + 1, strides + 1,
                   ndim - 1, esize);
}

py::object call_producer(const py::object& obj) {
  if (!py::hasattr(obj, "__dlpack__")) return obj;
  try {
    return obj.attr("__dlpack__")(py::arg("max_version") = py::make_tuple(1, 0));
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;
    return obj.attr("__dlpack__")();  // a producer from before DLPack 1.0
  }
}

Tensor from_dlpack(const py::object& obj) {
  py::object cap_obj = call_producer(obj);
  PyObject* cap = cap_obj.ptr();
  const bool versioned = PyCapsule_IsValid(cap, "dltensor_versioned");
  HG_REQUIRE_TYPE(versioned || PyCapsule_IsValid(cap, "dltensor"),
                  "from_dlpack: expected an object with __dlpack__ or an unused DLPack capsule");
  void* managed = PyCapsule_GetPointer(cap, versioned ? "dltensor_versioned" : "dltensor");
  HgDLTensor dl;
  std::function<void()> release;
  bool read_only = false;
  if (versioned) {
    auto* m = static_cast<HgDLManagedTensorVersioned*>(managed);
    HG_REQUIRE(m->version.major == 1, "from_dlpack: DLPack major version ", m->version.major,
               " is not supported (expected 1)");
    dl = m->dl_tensor;
    read_only = (m->flags & kHgDLFlagReadOnly) != 0;
    release = [m] { if (m->deleter) m->deleter(m); };
  } else {
    auto* m = static_cast<HgDLManagedTensor*>(managed);
    dl = m->dl_tensor;
    release = [m] { if (m->deleter) m->deleter(m); };
  }
  PyCapsule_SetName(cap, versioned ? "used_dltensor_versioned" : "used_dltensor");
  // From here the capsule is ours: every path below must call `release` exactly once.
  Device dev;
  try {
    const DType dtype = dtype_from_dl(dl.dtype);
    if (dl.device.device_type == kHgDLCPU || dl.device.device_type == kHgDLCUDAHost) {
      dev = Device{};
    } else if (dl.device.device_type == gpu_dl_device_type()) {
      dev = Device{Device::Kind::gpu, dl.device.device_id};
      backend_for(dev);  // ValueError when the GPU is not usable here
    } else {
      fail(ErrorKind::value, "from_dlpack: data lives on DLPack device type ",
           dl.device.device_type, ", which this build of hipgrad cannot use");
    }
    Shape shape(dl.shape, dl.shape + dl.ndim);
    const size_t esize = dtype_size(dtype);
    bool compact = true;
    if (dl.strides) {
      int64_t expect = 1;
      for (int i = dl.ndim - 1; i >= 0; --i) {
        if (shape[i] != 1 && dl.strides[i] != expect) compact = false;
        expect *= shape[i];
      }
    }
    char* base = static_cast<char*>(dl.data) + dl.byte_offset;
    const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * esize;
    // Data not aligned to its element size (a byte-offset view) is copied like strided data:
    // kernels may read floats and ints with aligned accesses.
    const bool aligned = reinterpret_cast<uintptr_t>(base) % esize == 0;
    if (!compact || !aligned) {  // made contiguous and aligned: a copy (CPU only)
      HG_REQUIRE(dev.is_cpu(), "from_dlpack: non-contiguous or misaligned GPU data is not supported; "
                 "make it contiguous first");
      Tensor t = empty(shape, dtype, dev);
      if (nbytes && compact) std::memcpy(t.raw(), base, nbytes);
      else if (nbytes) gather_strided(static_cast<char*>(t.raw()), base, dl.shape, dl.strides, dl.ndim, esize);
      release();
      return t;
    }
    // hipgrad tensors are always writable: sharing a read-only buffer would let any op write it.
    if (read_only)
      throw py::buffer_error(
          "from_dlpack: the data is read-only, and a zero-copy tensor over it would be writable; "
          "use hg.tensor(data) for a copy");
    auto storage = std::make_shared<Storage>(base, nbytes, dev, [release](void*) {
      py::gil_scoped_acquire gil;  // producers' deleters may touch Python objects
      release();
    });
    return Tensor(std::move(storage), 0, shape, dtype);
  } catch (...) {
    release();
    throw;
  }
}

}  // namespace

void bind_tensor(py::module_& m) {
  py::class_<Tensor>(m, "Tensor", "A contiguous float32/int tensor on one device.")
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def_property_readonly("dtype", [](const Tensor& t) { return numpy_dtype(t.dtype()); })
      .def_property_readonly("device", [](const Tensor& t) { return t.device().str(); })
      .def_property_readonly("ndim", &Tensor::dim)
      .def_property_readonly("nbytes", &Tensor::nbytes)
      .def("numel", &Tensor::numel)
      .def("data_ptr", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()); })
      .def("numpy", &to_numpy, "A NumPy copy of the data.")
      .def("to", [](const Tensor& t, const std::string& d) { return t.to(Device::parse(d)); },
           py::arg("device"), GilRelease())
      .def("clone", &Tensor::clone, GilRelease())
      .def("zero_", [](Tensor& t) -> Tensor& { t.zero_(); return t; }, GilRelease())
      .def("copy_", [](Tensor& t, const Tensor& src) -> Tensor& { t.copy_from(src); return t; },
           py::arg("src"), GilRelease())
      .def("_reshape", [](const Tensor& t, const std::vector<int64_t>& s) { return t.reshape(to_shape(s)); })
      .def("prefix_view", [](const Tensor& t, const std::vector<int64_t>& s) { return t.prefix_view(to_shape(s)); },
           py::arg("shape"),
           "A view of the first prod(shape) elements with `shape` (shares storage): a preallocated "
           "buffer used as the out= of smaller outputs.")
      .def("narrow", [](const Tensor& t, int64_t start, int64_t length) { return t.narrow(start, length); },
           py::arg("start"), py::arg("length"),
           "A view of t[start:start + length] along the first axis (shares storage).")
      .def("_shares_storage", [](const Tensor& a, const Tensor& b) { return a.storage() == b.storage(); })
      .def("__len__", [](const Tensor& t) {
        HG_REQUIRE_TYPE(t.dim() > 0, "len() of a 0-d tensor");
        return t.size(0);
      })
      .def("__dlpack__", [](const Tensor& t, const py::object& stream, const py::object& max_version,
                            const py::object& dl_device, const py::object& copy) {
             (void)stream; (void)dl_device;
             HG_REQUIRE(copy.is_none() || !copy.cast<bool>(),
                        "__dlpack__: copy=True is not supported; call .clone() first");
             const bool versioned = !max_version.is_none() &&
                                    max_version.cast<py::tuple>()[0].cast<int>() >= 1;
             return to_dlpack(t, versioned);
           }, py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
           py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__", [](const Tensor& t) {
        return py::make_tuple(t.device().is_cpu() ? int(kHgDLCPU) : gpu_dl_device_type(), t.device().index);
      });
  m.def("from_numpy", &from_numpy, py::arg("array"), py::arg("device") = "cpu");
  m.def("from_dlpack", &from_dlpack, py::arg("obj"));
  m.def("empty", [](const std::vector<int64_t>& s, const py::dtype& dt, const std::string& d) {
    return empty(to_shape(s), dtype_from_numpy(dt), Device::parse(d));
  });
  m.def("zeros", [](const std::vector<int64_t>& s, const py::dtype& dt, const std::string& d) {
    return zeros(to_shape(s), dtype_from_numpy(dt), Device::parse(d));
  });
}

}  // namespace hg
