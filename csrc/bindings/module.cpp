// pybind11 module hipgrad._C: the Tensor, the device functions and the op table, nothing else.
#include "bind.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "hipgrad native core";
  hg::bind_errors(m);
  hg::bind_tensor(m);
  hg::bind_runtime(m);
  py::module_ ops = m.def_submodule("ops", "the op table");
  hg::bind_ops_gemm(ops);
  hg::bind_ops_conv(ops);
  hg::bind_ops_activation(ops);
  hg::bind_ops_pool(ops);
  hg::bind_ops_loss(ops);
  hg::bind_ops_optim(ops);
  hg::bind_ops_layers(ops);
  hg::bind_ops_quant(ops);
  hg::bind_ops_fused(ops);
  hg::bind_ops_attention(ops);
}
