// Devices, memory statistics, threads, build facts and what the op table holds.
#include "../core/build_facts.h"
#include "../cpu/cpu_kernels.h"
#include "../cpu/isa.h"
#include "bind.h"

namespace hg {
void bind_parallel(py::module_& m);  // parallel.cpp: the CPU thread pool's hooks
void bind_collectives(py::module_& m);  // collectives.cpp: NCCL / RCCL when compiled in
namespace {

py::dict record_dict(const RunRecord& r) {
  py::dict out;
  out["op"] = r.op;
  out["impl"] = r.impl;
  out["key"] = r.key;
  out["device"] = r.device;
  out["phase"] = r.phase;
  out["layer"] = r.layer;
  out["start_us"] = r.start_us;
  out["ms"] = r.ms;
  out["bytes_allocated"] = r.bytes_allocated;
  out["live_bytes"] = r.live_bytes;
  out["tuning"] = r.tuning;
  return out;
}

OpKernelsBase* find_op(const std::string& op) {
  for (OpKernelsBase* o : all_ops())
    if (o->op() == op) return o;
  fail(ErrorKind::value, "op must name an op of this build (hipgrad._C.op_names()), got '", op,
       "'");
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("devices", &device_list);
  m.def("gpu_unavailable_reason", &gpu_unavailable_reason);
  m.def("synchronize", [](const std::string& d) {
    const Device dev = Device::parse(d);
    backend_for(dev).synchronize(dev.index);
  }, py::arg("device") = "cpu", GilRelease());
  m.def("time_ms", [](const py::function& fn, const std::string& d) {
    const Device dev = Device::parse(d);
    return backend_for(dev).time_ms(dev.index, [&fn] { fn(); });
  }, py::arg("fn"), py::arg("device") = "cpu");
  m.def("memory_stats", [](const std::string& d) {
    const Device dev = Device::parse(d);
    const MemoryStats s = backend_for(dev).memory_stats(dev.index);
    py::dict out;
    out["current"] = s.current;
    out["peak"] = s.peak;
    out["reserved"] = s.reserved;
    out["allocations"] = s.allocations;
    return out;
  }, py::arg("device") = "cpu");
  m.def("reset_peak_memory_stats", [](const std::string& d) {
    const Device dev = Device::parse(d);
    backend_for(dev).reset_peak_memory_stats(dev.index);
  }, py::arg("device") = "cpu");
  m.def("empty_cache", [](const std::string& d) {
    const Device dev = Device::parse(d);
    backend_for(dev).empty_cache(dev.index);
  }, py::arg("device") = "cpu");
  m.def("_set_poison_allocations", [](bool on) { poison_allocations() = on; }, py::arg("on"));
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"));
  m.def(
      "_all_finite_f32",
      [](py::array_t<float, py::array::c_style> a) {
        const float* p = a.data();
        const int64_t n = a.size();
        py::gil_scoped_release release;
        return cpu::all_finite(p, n);
      },
      py::arg("a").noconvert(), "No NaN or infinity in a C-contiguous float32 array.");
  m.def("get_num_threads", &cpu::num_threads);
  bind_parallel(m);
  bind_collectives(m);
  // Debug/bench: force the CPU kernels' instruction set ("generic" | "avx2" | "avx512").
  m.def("_set_cpu_isa", &cpu::set_cpu_isa, py::arg("isa"));
  m.def("_check_environment", [] {
    impl_override();
    cpu::check_cpu_isa_env();
  }, "ValueError for a HIPGRAD_IMPL or HIPGRAD_CPU_ISA value hipgrad cannot honour.");
  m.def("_cpu_isa", [] { return std::string(cpu::cpu_isa_name(cpu::cpu_isa())); });
  m.def("_cpu_isa_detected", [] { return std::string(cpu::cpu_isa_name(cpu::detected_cpu_isa())); });
  m.def("_gemm_blocking", [] {
    const cpu::GemmBlocking b = cpu::gemm_handwritten_blocking();
    py::dict out;
    out["kernel"] = b.kernel;
    out["mr"] = b.mr;
    out["nr"] = b.nr;
    out["kc"] = b.kc;
    out["mc"] = b.mc;
    out["nc_l2"] = b.nc_l2;
    out["nc"] = b.nc;
    return out;
  });
  m.def("build_facts", [] { return build_facts(); });
  m.def("_gpu_probe", [] {
    const GpuProbe probe = gpu_probe();
    py::dict out;
    out["compiled"] = probe.compiled;
    out["runtime_version"] = probe.runtime_version;
    out["driver_version"] = probe.driver_version;
    out["count_error"] = probe.count_error;
    py::list devices;
    for (const GpuDeviceProperties& d : probe.devices) {
      py::dict row;
      row["name"] = d.name;
      row["arch"] = d.arch;
      row["warp_size"] = d.warp_size;
      row["multiprocessors"] = d.multiprocessors;
      row["max_threads_per_block"] = d.max_threads_per_block;
      row["shared_mem_per_block"] = d.shared_mem_per_block;
      row["total_memory"] = d.total_memory;
      row["free_memory"] = d.free_memory;
      devices.append(row);
    }
    out["devices"] = devices;
    return out;
  }, "What the GPU runtime reports: versions and every device it sees, usable or not.");
  m.def("kernel_table", [] {
    py::list rows;
    for (OpKernelsBase* op : all_ops())
      for (const KernelDescription& d : op->describe()) {
        py::dict row;
        row["op"] = d.op;
        row["backend"] = d.backend;
        row["variant"] = d.variant;
        row["kernel"] = d.kernel;
        row["note"] = d.note;
        row["alternate"] = d.alternate;
        rows.append(row);
      }
    return rows;
  });
  m.def("op_names", [] {
    py::list names;
    for (OpKernelsBase* op : all_ops()) names.append(op->op());
    return names;
  });
  m.def("tuning_choices", [] {
    py::list rows;
    for (OpKernelsBase* op : all_ops())
      for (const auto& [key, c] : op->choices()) {
        py::dict row;
        row["op"] = op->op();
        row["key"] = key;
        row["chosen"] = variant_name(c.variant);
        row["handwritten_ms"] = c.ms[0];
        row["vendor_ms"] = c.ms[1];
        row["kernel"] = c.kernel;
        py::dict times;
        for (const auto& [name, ms] : c.candidates) times[py::str(name)] = ms;
        row["candidates"] = times;
        rows.append(row);
      }
    return rows;
  });
  m.def("clear_tuning", [] {
    for (OpKernelsBase* op : all_ops()) op->clear_choices();
  });
  m.def("last_run", [] { return record_dict(last_run()); });
  m.def("trace_start", &trace_start);
  m.def("trace_stop", [] {
    py::list rows;
    for (const RunRecord& r : trace_stop()) rows.append(record_dict(r));
    return rows;
  });
  m.def("trace_set_context", &trace_set_context, py::arg("phase"), py::arg("layer"));
  m.def("trace_context", &trace_context);
  m.def("steady_us", &steady_us);
  // A cached choice by kernel name; False when the op or the kernel is not in this build.
  m.def("set_tuning_choice_kernel", [](const std::string& op, const std::string& key,
                                       const std::string& kernel,
                                       const OpKernelsBase::Timings& candidates) {
    for (OpKernelsBase* o : all_ops())
      if (o->op() == op) return o->set_choice(key, kernel, candidates);
    return false;
  });
  // Tests and benches: run one candidate of an op by name, whatever impl a call asks for.
  m.def("force_kernel", [](const std::string& op, const std::string& kernel) {
    OpKernelsBase* o = find_op(op);
    HG_REQUIRE(o->force_kernel(kernel), "force_kernel: ", op, " has no kernel named '", kernel,
               "' in this build (see hipgrad.build_info()['kernels'])");
  }, py::arg("op"), py::arg("kernel"));
  m.def("clear_forced_kernel", [](const std::string& op, const std::string& backend) {
    find_op(op)->clear_forced(backend == "gpu" ? Backend::gpu : Backend::cpu);
  }, py::arg("op"), py::arg("backend"));
  m.def("forced_kernel", [](const std::string& op, const std::string& backend) {
    return find_op(op)->forced_kernel(backend == "gpu" ? Backend::gpu : Backend::cpu);
  }, py::arg("op"), py::arg("backend"));
}

}  // namespace hg
