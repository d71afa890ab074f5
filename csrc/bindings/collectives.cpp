// hipgrad._C.collectives: the GPU collectives library (NCCL / RCCL) when one is compiled in
// (core/collectives.h); hipgrad.distributed does the rendezvous over MPI.
#include "../core/collectives.h"
#include "bind.h"

namespace hg {

namespace {
const GpuCollectives& require_collectives(const char* what) {
  const GpuCollectives* c = gpu_collectives();
  HG_REQUIRE(c != nullptr, what, ": no NCCL or RCCL was compiled into this build (GPU tensors are "
             "staged through host memory and MPI)");
  return *c;
}
}  // namespace

void bind_collectives(py::module_& m) {
  py::module_ c = m.def_submodule("collectives", "NCCL / RCCL collectives over GPU buffers");
  c.def("library", []() -> py::object {
    const GpuCollectives* lib = gpu_collectives();
    return lib ? py::object(py::str(lib->library)) : py::object(py::none());
  }, "\"NCCL x.y.z\" / \"RCCL x.y.z\", or None when neither was compiled in.");
  c.def("unique_id", []() {
    return py::bytes(require_collectives("collectives.unique_id").unique_id());
  }, "ncclGetUniqueId: the rendezvous id rank 0 sends to the others (128 bytes).");
  py::class_<GpuComm>(c, "Comm")
      .def_property_readonly("rank", &GpuComm::rank)
      .def_property_readonly("size", &GpuComm::size)
      .def_property_readonly("device", &GpuComm::device)
      .def("all_reduce_", &GpuComm::all_reduce, py::arg("t"), py::arg("avg"), GilRelease())
      .def("broadcast_", &GpuComm::broadcast, py::arg("t"), py::arg("root"), GilRelease());
  c.def("create", [](py::bytes id, int nranks, int rank, int device) {
    const GpuCollectives& lib = require_collectives("collectives.create");
    std::string raw = id;
    py::gil_scoped_release release;  // ncclCommInitRank waits for the other ranks
    return lib.create(raw, nranks, rank, device);
  }, py::arg("id"), py::arg("nranks"), py::arg("rank"), py::arg("device"),
     "ncclCommInitRank on gpu:device with the id from rank 0.");
}

}  // namespace hg
