// The extension's tensor-level ops (csrc/binding.cpp): registered as torch.ops.convt3d_cutlass.* for
// Python, and called directly by the eager autograd node (csrc/eager_node.cpp), which would otherwise
// pay the dispatcher's boxing for each of them. Shapes and contracts are at the definitions.
#pragma once
#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

// A named host-time scope in torch.profiler's CPU view (bench/tools/hostprof.py): the ops' checks apart from
// their kernels' runs (tensor maps, launches), the eager node's passes apart from its glue. Why: the node's
// own C++ was 118 of 467 us of a profiled small-layer step, unsplit (v0.61; the device has no perf). A scope
// costs a flag test when no profiler listens.
#define CONVT3D_SCOPE(name) RECORD_FUNCTION(name, std::vector<c10::IValue>())

namespace convt3d {
namespace torch_ops {

void dgrad(const std::string& kernel, const at::Tensor& dy, const at::Tensor& filter,
           const std::optional<at::Tensor>& bias, at::Tensor& dx, at::IntArrayRef pad, int64_t split_k = 1);
void dgrad_phases(const std::vector<std::string>& kernels, const at::Tensor& dy, at::TensorList filters,
                  const std::optional<at::Tensor>& bias, at::Tensor& y, at::IntArrayRef phases, int64_t stride,
                  at::IntArrayRef split_k = {}, bool grouped = true);
// dgrad_phases with the phase filters end to end in one flat filter (taps: 3 per phase), grouped.
void dgrad_phases_flat(const std::vector<std::string>& kernels, const at::Tensor& dy, const at::Tensor& filter,
                       at::IntArrayRef taps, const std::optional<at::Tensor>& bias, at::Tensor& y,
                       at::IntArrayRef phases, int64_t stride, at::IntArrayRef split_k);
void fprop(const std::string& kernel, const at::Tensor& x, const at::Tensor& filter,
           const std::optional<at::Tensor>& bias, at::Tensor& y, at::IntArrayRef pad, at::IntArrayRef stride,
           int64_t split_k = 1, bool ncdhw = false);
void wgrad(const std::string& kernel, const at::Tensor& dy, const at::Tensor& x, at::Tensor& partials,
           at::IntArrayRef pad, at::IntArrayRef stride, bool ncdhw = false);
void direct(const std::string& kernel, const at::Tensor& in, const at::Tensor& weight,
            const std::optional<at::Tensor>& bias, at::Tensor& out, at::IntArrayRef phases, int64_t s_in,
            int64_t s_out, bool out_ncdhw, bool in_ncdhw, const std::optional<at::Tensor>& in_sums,
            bool sum_phases = false, bool out_sectors = false,
            const std::optional<at::Tensor>& in_copy = std::nullopt);
void direct_wgrad(const std::string& kernel, const at::Tensor& x, const at::Tensor& grad_y, at::Tensor& partials,
                  int64_t k, int64_t stride, int64_t padding, int64_t taps_per_group, bool x_ncdhw,
                  bool gy_ncdhw = false);
void transpose_layout(const at::Tensor& src, at::Tensor& dst, bool to_channels_last,
                      const std::optional<at::Tensor>& sums);
int64_t transpose_tiles(int64_t positions);
void channel_sums(const at::Tensor& src, at::Tensor& out);
void wgrad_finish(const at::Tensor& partials, at::Tensor& out);

}  // namespace torch_ops
}  // namespace convt3d
