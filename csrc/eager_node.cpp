// The eager training step's autograd node in C++: forward, grad_input, grad_weight and the bias
// gradient of one layer, run from a plan that Python made once per layer shape.
//
// Why: a small layer's eager step was host-bound. Its Python autograd.Function crossed into C++ about a
// dozen times per step (each op call through the dispatcher, each allocation and view), and the engine
// called back into Python for the backward: 0.4-0.5 ms of host time against 0.2-0.3 ms of kernels
// (docs/performance.md v0.10-v0.11). Here Python makes one call per forward, and the backward never
// leaves C++.
//
// Policy stays in Python (python/convt3d_cutlass/eager.py): which kernels, which phase tables, how many
// slices, which layouts the kernels read and write. This file only replays those decisions, mirroring
// launch.py and ops.py step for step. A forward on stock CUTLASS phases (several launches, each with
// its own block of the filter) runs here too, with the outputs that only get the bias (k < stride) filled.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "binding_ops.h"

namespace convt3d {
namespace eager {
namespace {

namespace ops = convt3d::torch_ops;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Plan {
  int64_t k = 0, stride = 1, padding = 0, output_padding = 0;
  bool x_cl = false;       // x, y and grad_x are channels_last_3d; else packed NCDHW
  bool native_tf32 = false;  // create_graph: PyTorch's differentiable backward, TF32 only for "tf32"
  std::string fwd_kernel;  // the forward: one tap-reuse launch (the direct op)
  std::vector<int64_t> fwd_table;
  bool fwd_ncdhw = false;  // the kernel writes y NCDHW itself
  bool fwd_sectors = false;  // ... by whole sectors (direct op's out_sectors)
  bool gi_direct = false;  // grad_input: tap reuse (direct op) or stock fprop
  std::string gi_kernel;
  std::vector<int64_t> gi_table;
  bool gi_ncdhw = false;
  bool gi_sectors = false;
  bool gw_direct = false;  // grad_weight: tap reuse (direct_wgrad op) or stock wgrad
  std::string gw_kernel;
  int64_t gw_slices = 1, gw_taps_per_group = 1;
  bool gw_x_ncdhw = false;  // the kernel reads an NCDHW x in place (a stock-contract row: with gw_gy_ncdhw, its NC mode)
  bool fwd_x_ncdhw = false;  // the forward kernel reads an NCDHW x in place
  int64_t gi_sum_rows = 0;   // > 0: grad_input's kernel also sums grad_y (the bias gradient) into this many rows
  bool gi_parities = false;  // grad_input's kernel sums grad_y's stride^3 parities (direct op's sum_phases)
  // grad_input's kernel reads a packed NCDHW grad_y in place (stock contract: FFMA NC mode); with grad_weight reading a
  // copy, after grad_weight, the copy released first
  bool gi_gy_ncdhw = false;
  bool gw_gy_ncdhw = false;  // grad_weight's kernel reads a packed NCDHW grad_y in place
  // The forward on stock CUTLASS phases (launch.forward's dgrad / dgrad_phases): a kernel, 9 ints (pad,
  // first output, count), filter taps along d, h, w and split-K slices per phase; the phase filters lie
  // end to end in the flat forward filter (weights.stock_phase_filter).
  bool fwd_stock = false;
  std::vector<std::string> phase_kernels;
  std::vector<int64_t> phase_ints, phase_splits;
  std::vector<int64_t> phase_taps;  // 3 per phase: taps along d, h and w (dgrad_phases_flat)
  // k < stride: the first output (d, h, w) of each phase that sees no input; its outputs get the bias or 0
  std::vector<int64_t> bias_only_firsts;
  int64_t gi_slices = 1;  // serial split-K slices of the stock grad_input (selector.fprop_slices)
  bool gw_first = false;  // the backward runs grad_weight before grad_input (launch.grad_weight_first)
  // grad_input's kernel reads a packed NCDHW grad_y in place and writes its channels_last copy (for
  // grad_weight) and its sums (gi_sum_rows rows): launch.grad_input_copying
  bool gi_copies = false;
  // grad_weight by depth slabs of an NCDHW x and grad_y (direct.ffma_wgrad_slabs, launch._grad_weight_slabs):
  // 5 ints per slab, x's depths [z0, z1), grad_y's [a0, a1) (a0 == a1: no tap reaches it), the front pad_d
  std::vector<int64_t> gw_slabs;
};

// Plans live for the process (one per layer shape and setting); a deque keeps references stable.
std::mutex plans_mutex;
std::deque<Plan> plans;

const Plan& plan_at(int64_t id) {
  std::lock_guard<std::mutex> lock(plans_mutex);
  TORCH_CHECK(id >= 0 && id < static_cast<int64_t>(plans.size()), "convt3d_cutlass: unknown eager plan ",
              std::to_string(id));
  return plans[static_cast<size_t>(id)];
}

// ints: k, stride, padding, output_padding, x_cl, native_tf32, fwd_ncdhw, gi_direct, gi_ncdhw (fwd_ncdhw and
// gi_ncdhw: 0 NDHWC, 1 NCDHW, 2 NCDHW by whole sectors),
// gw_direct, gw_slices, gw_taps_per_group, gw_x_ncdhw, fwd_x_ncdhw, gi_sum_rows, gi_parities,
// gi_gy_ncdhw, gw_gy_ncdhw, fwd_stock, gi_slices, gw_first, gi_copies, the count of grad_weight's depth slabs
// (0: whole), then 5 per slab (Plan::gw_slabs). With fwd_stock, fwd_kernel names the phases' kernels
// separated by commas and fwd_table holds 13 ints per phase (eager.stock_forward_table): the kernels' phases,
// then those without taps (taps 0, the first output in ints 3-5; no kernel).
int64_t register_plan(std::string fwd_kernel, std::vector<int64_t> fwd_table, std::string gi_kernel,
                      std::vector<int64_t> gi_table, std::string gw_kernel, std::vector<int64_t> ints) {
  TORCH_CHECK(ints.size() >= 23 && ints[22] >= 0 && ints.size() == 23 + 5 * static_cast<size_t>(ints[22]),
              "convt3d_cutlass: eager_plan takes 23 integers, then 5 per depth slab of grad_weight");
  Plan p;
  p.k = ints[0]; p.stride = ints[1]; p.padding = ints[2]; p.output_padding = ints[3];
  p.x_cl = ints[4] != 0; p.native_tf32 = ints[5] != 0; p.fwd_ncdhw = ints[6] != 0;
  p.fwd_sectors = ints[6] == 2; p.gi_direct = ints[7] != 0; p.gi_ncdhw = ints[8] != 0; p.gi_sectors = ints[8] == 2;
  p.gw_direct = ints[9] != 0;
  p.gw_slices = ints[10]; p.gw_taps_per_group = ints[11]; p.gw_x_ncdhw = ints[12] != 0;
  p.fwd_x_ncdhw = ints[13] != 0; p.gi_sum_rows = ints[14]; p.gi_parities = ints[15] != 0;
  p.gi_gy_ncdhw = ints[16] != 0; p.gw_gy_ncdhw = ints[17] != 0; p.fwd_stock = ints[18] != 0;
  p.gi_slices = ints[19]; p.gw_first = ints[20] != 0; p.gi_copies = ints[21] != 0;
  p.gw_slabs.assign(ints.begin() + 23, ints.end());
  for (size_t i = 0; i < p.gw_slabs.size(); i += 5) {
    const int64_t* q = p.gw_slabs.data() + i;
    TORCH_CHECK(!p.gw_direct && p.gw_x_ncdhw && p.gw_gy_ncdhw && 0 <= q[0] && q[0] < q[1] && 0 <= q[2] &&
                    q[2] <= q[3] && q[4] >= 0,
                "convt3d_cutlass: eager_plan has an invalid depth slab of grad_weight");
  }
  TORCH_CHECK(p.k >= 1 && p.stride >= 1 && p.padding >= 0 && p.output_padding >= 0 && p.gw_slices >= 1 &&
                  p.gw_taps_per_group >= 1 && p.gi_sum_rows >= 0 && (p.gi_sum_rows == 0 || p.gi_direct) &&
                  (!p.gi_parities || p.gi_direct) && (!p.gi_gy_ncdhw || p.gi_direct || !p.x_cl) &&
                  (!p.gw_gy_ncdhw || p.gw_direct || p.gw_x_ncdhw) && (p.gw_direct || p.gw_x_ncdhw == p.gw_gy_ncdhw) &&
                  (!p.fwd_stock || !(p.fwd_ncdhw || p.fwd_x_ncdhw)) &&
                  p.gi_slices >= 1 && (p.gi_slices == 1 || !p.gi_direct) &&
                  (!p.gi_copies || (p.gi_direct && p.gi_sum_rows > 0)),
              "convt3d_cutlass: eager_plan has an invalid problem");
  if (p.fwd_stock) {
    for (size_t at = 0; at <= fwd_kernel.size();) {
      const size_t end = std::min(fwd_kernel.find(',', at), fwd_kernel.size());
      p.phase_kernels.push_back(fwd_kernel.substr(at, end - at));
      at = end + 1;
    }
    const size_t n = p.phase_kernels.size(), all = fwd_table.size() / 13;
    TORCH_CHECK(fwd_table.size() % 13 == 0 && all >= n && (p.stride > 1 || all == 1) &&
                    (all == n || p.k < p.stride),
                "convt3d_cutlass: eager_plan's stock forward takes 13 integers per phase kernel, then per phase "
                "without taps (k < stride only)");
    for (size_t i = 0; i < all; ++i) {
      const int64_t* q = fwd_table.data() + 13 * i;
      if (i >= n) {  // no taps: only its first output counts
        TORCH_CHECK(q[9] == 0 && q[10] == 0 && q[11] == 0 && q[3] >= 0 && q[4] >= 0 && q[5] >= 0 &&
                        q[3] < p.stride && q[4] < p.stride && q[5] < p.stride,
                    "convt3d_cutlass: eager_plan has an invalid phase without taps");
        p.bias_only_firsts.insert(p.bias_only_firsts.end(), {q[3], q[4], q[5]});
        continue;
      }
      p.phase_ints.insert(p.phase_ints.end(), q, q + 9);
      p.phase_taps.insert(p.phase_taps.end(), {q[9], q[10], q[11]});
      p.phase_splits.push_back(q[12]);
      TORCH_CHECK(q[9] >= 1 && q[10] >= 1 && q[11] >= 1, "convt3d_cutlass: eager_plan has a phase without taps");
    }
  }
  p.fwd_kernel = std::move(fwd_kernel); p.fwd_table = std::move(fwd_table);
  p.gi_kernel = std::move(gi_kernel); p.gi_table = std::move(gi_table);
  p.gw_kernel = std::move(gw_kernel);
  std::lock_guard<std::mutex> lock(plans_mutex);
  plans.push_back(std::move(p));
  return static_cast<int64_t>(plans.size()) - 1;
}

// layouts.py's helpers, same rules.
at::Tensor aligned16(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 ? t : t.clone();
}

bool is_cl(const at::Tensor& t) { return t.is_contiguous(at::MemoryFormat::ChannelsLast3d); }

at::Tensor empty_cl(at::IntArrayRef shape, const at::Tensor& like) {
  return at::empty(shape, like.options().memory_format(at::MemoryFormat::ChannelsLast3d));
}

// [N, C, D, H, W] -> packed [N, D, H, W, C]: a view of a channels_last_3d t, else our transpose.
at::Tensor ndhwc(const at::Tensor& t) {
  if (is_cl(t)) return aligned16(t).permute({0, 2, 3, 4, 1});
  at::Tensor src = t.contiguous();
  at::Tensor out = at::empty({src.size(0), src.size(2), src.size(3), src.size(4), src.size(1)}, src.options());
  ops::transpose_layout(src, out, true, std::nullopt);
  return out;
}

// t as channels_last_3d (unchanged) or as packed NCDHW.
at::Tensor to_format(const at::Tensor& t, bool channels_last) {
  if (channels_last || t.is_contiguous()) return t;
  if (is_cl(t)) {
    at::Tensor out = at::empty(t.sizes(), t.options());
    ops::transpose_layout(t.permute({0, 2, 3, 4, 1}), out, false, std::nullopt);
    return out;
  }
  return t.contiguous();
}

// [C] sums of a grad_y over N, D, H, W (layouts.channel_sums).
at::Tensor channel_sums(const at::Tensor& t) {
  if (is_cl(t) && t.numel() > 0) {
    at::Tensor out = at::empty({t.size(1)}, t.options());
    ops::channel_sums(aligned16(t).permute({0, 2, 3, 4, 1}), out);
    return out;
  }
  return t.sum(at::IntArrayRef{0, 2, 3, 4});
}

// [C] sums of the rows of a packed [..., C] buffer of partial sums (layouts.row_sums): our one launch, in
// place of a torch reduction's host set-up on the small layers' host-bound steps.
at::Tensor row_sums(const at::Tensor& t) {
  at::Tensor out = at::empty({t.size(-1)}, t.options());
  ops::channel_sums(t, out);
  return out;
}

// launch.forward's stock path: the phases' kernels on the flat filter (phase filters end to end), into y's
// strided views.
at::Tensor stock_forward(const Plan& P, const at::Tensor& x, const at::Tensor& filter,
                         const std::optional<at::Tensor>& b, at::IntArrayRef shape) {
  const int64_t c_in = x.size(1), c_out = shape[1];
  at::Tensor y = empty_cl(shape, x);
  at::Tensor Y = y.permute({0, 2, 3, 4, 1});
  const int64_t s = P.stride;
  for (size_t i = 0; i < P.bias_only_firsts.size(); i += 3) {  // k < s: outputs no tap reaches (launch.forward)
    const int64_t* f = P.bias_only_firsts.data() + i;
    at::Tensor dst = Y.slice(1, f[0], Y.size(1), s).slice(2, f[1], Y.size(2), s).slice(3, f[2], Y.size(3), s);
    if (b.has_value())
      dst.copy_(b->expand_as(dst));
    else
      dst.zero_();
  }
  if (P.stride == 1) {
    const int64_t* t = P.phase_taps.data();
    TORCH_CHECK(filter.numel() == c_in * t[0] * t[1] * t[2] * c_out,
                "convt3d_cutlass: the eager node's stock filter has ", std::to_string(filter.numel()),
                " elements, its kernel takes ", std::to_string(c_in * t[0] * t[1] * t[2] * c_out));
    ops::dgrad(P.phase_kernels[0], ndhwc(x), filter.view({c_in, t[0], t[1], t[2], c_out}), b, Y,
               at::IntArrayRef(P.phase_ints.data(), 3));
  } else {
    ops::dgrad_phases_flat(P.phase_kernels, ndhwc(x), filter, P.phase_taps, b, Y, P.phase_ints, P.stride,
                           P.phase_splits);
  }
  return to_format(y, P.x_cl);
}

at::Tensor forward_pass(const Plan& P, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& filter,
                        const std::optional<at::Tensor>& bias) {
  CONVT3D_SCOPE("convt3d::node.forward");
  std::optional<at::Tensor> b;
  if (bias.has_value() && bias->defined()) b = aligned16(bias->contiguous());
  std::array<int64_t, 5> shape{x.size(0), weight.size(1), 0, 0, 0};
  for (int a = 0; a < 3; ++a)
    shape[2 + a] = (x.size(2 + a) - 1) * P.stride - 2 * P.padding + P.k + P.output_padding;
  if (P.fwd_stock) return stock_forward(P, x, filter, b, shape);
  at::Tensor X = P.fwd_x_ncdhw ? aligned16(x) : ndhwc(x);
  at::Tensor y = P.fwd_ncdhw ? at::empty(shape, x.options()) : empty_cl(shape, x);
  at::Tensor out = P.fwd_ncdhw ? y : y.permute({0, 2, 3, 4, 1});
  ops::direct(P.fwd_kernel, X, filter, b, out, P.fwd_table, 1, P.stride, P.fwd_ncdhw, P.fwd_x_ncdhw,
              std::nullopt, false, P.fwd_sectors);
  return to_format(y, P.x_cl);
}

// G: grad_y as packed [N, Do, Ho, Wo, C_out], or (G_ncdhw) packed [N, C_out, Do, Ho, Wo]. sums: undefined,
// or [P.gi_sum_rows, C_out] that the kernel fills with partial sums of G (launch.grad_input_with_bias).
// copy (with G_ncdhw and sums): undefined, or packed [N, Do, Ho, Wo, C_out] that the kernel fills with G.
// grad_x comes back as the kernel wrote it (the stock kernel: channels_last_3d whatever x's layout); the caller
// converts it (to_format) once it has released what it no longer needs.
at::Tensor grad_input_pass(const Plan& P, const at::Tensor& G, bool G_ncdhw, const at::Tensor& filter,
                           const at::Tensor& x, const at::Tensor& sums, const at::Tensor& copy = at::Tensor()) {
  CONVT3D_SCOPE("convt3d::node.grad_input");
  TORCH_CHECK(filter.defined(), "convt3d_cutlass: the eager node has no grad_input filter (x did not require "
              "grad when the forward ran)");
  const auto shape = x.sizes();
  at::Tensor gx;
  if (P.gi_direct) {
    gx = P.gi_ncdhw ? at::empty(shape, G.options()) : empty_cl(shape, G);
    at::Tensor out = P.gi_ncdhw ? gx : gx.permute({0, 2, 3, 4, 1});
    ops::direct(P.gi_kernel, G, filter, std::nullopt, out, P.gi_table, P.stride, 1, P.gi_ncdhw, G_ncdhw,
                sums.defined() ? std::optional<at::Tensor>(sums) : std::nullopt, P.gi_parities, P.gi_sectors,
                copy.defined() ? std::optional<at::Tensor>(copy) : std::nullopt);
  } else if (G_ncdhw) {  // the FFMA row's NC mode (gi_gy_ncdhw without tap reuse): grad_x written NCDHW
    gx = at::empty(shape, G.options());
    const int64_t pad[3] = {P.padding, P.padding, P.padding}, st[3] = {P.stride, P.stride, P.stride};
    ops::fprop(P.gi_kernel, G, filter, std::nullopt, gx, pad, st, P.gi_slices, true);
  } else {
    gx = empty_cl(shape, G);
    at::Tensor out = gx.permute({0, 2, 3, 4, 1});
    const int64_t pad[3] = {P.padding, P.padding, P.padding}, st[3] = {P.stride, P.stride, P.stride};
    ops::fprop(P.gi_kernel, G, filter, std::nullopt, out, pad, st, P.gi_slices);
  }
  return gx;
}

// launch._grad_weight_slabs: grad_w by depth slabs of x and grad_y (both packed NCDHW), each slab's x and window of
// grad_y converted into buffers every slab reuses, its partial sums summed into its part, the parts in slab order.
at::Tensor grad_weight_slabs(const Plan& P, const at::Tensor& x, const at::Tensor& gy, int64_t c_out,
                             at::Tensor& partials) {
  CONVT3D_SCOPE("convt3d::node.grad_weight_slabs");
  const int64_t k = P.k, n = x.size(0), c_in = x.size(1), h = x.size(3), w = x.size(4);
  const int64_t ho = gy.size(3), wo = gy.size(4), count = static_cast<int64_t>(P.gw_slabs.size() / 5);
  int64_t depth = 0, window = 1;
  bool empty = false;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t* q = P.gw_slabs.data() + 5 * i;
    TORCH_CHECK(q[1] <= x.size(2) && q[3] <= gy.size(2), "convt3d_cutlass: grad_weight's depth slabs do not fit x ",
                "and grad_y");
    depth = std::max(depth, q[1] - q[0]);
    window = std::max(window, q[3] - q[2]);
    empty = empty || q[3] == q[2];
  }
  at::Tensor xbuf = at::empty({n * depth * h * w * c_in}, x.options());
  at::Tensor gbuf = at::empty({n * window * ho * wo * c_out}, x.options());
  at::Tensor parts = empty ? at::zeros({count, c_in, c_out, k, k, k}, x.options())
                           : at::empty({count, c_in, c_out, k, k, k}, x.options());
  const int64_t st[3] = {P.stride, P.stride, P.stride};
  for (int64_t i = 0; i < count; ++i) {
    const int64_t* q = P.gw_slabs.data() + 5 * i;
    if (q[3] == q[2]) continue;
    at::Tensor xs = xbuf.narrow(0, 0, n * (q[1] - q[0]) * h * w * c_in).view({n, q[1] - q[0], h, w, c_in});
    at::Tensor gs = gbuf.narrow(0, 0, n * (q[3] - q[2]) * ho * wo * c_out).view({n, q[3] - q[2], ho, wo, c_out});
    ops::transpose_layout(x.narrow(2, q[0], q[1] - q[0]), xs, true, std::nullopt);
    ops::transpose_layout(gy.narrow(2, q[2], q[3] - q[2]), gs, true, std::nullopt);
    const int64_t pad[3] = {q[4], P.padding, P.padding};
    ops::wgrad(P.gw_kernel, xs, gs, partials, pad, st);
    at::Tensor part = parts.select(0, i);
    ops::wgrad_finish(partials, part);
  }
  return parts.sum(0);
}

// gy: the backward's grad_y as autograd gave it, which the FFMA rows' NC mode (and depth slabs) read where it is
// packed NCDHW (G may be the channels_last_3d copy grad_input needs).
at::Tensor grad_weight_pass(const Plan& P, const at::Tensor& G, bool G_ncdhw, const at::Tensor& x,
                            int64_t c_out, const at::Tensor& gy) {
  CONVT3D_SCOPE("convt3d::node.grad_weight");
  const int64_t k = P.k, c_in = x.size(1);
  at::Tensor partials;
  if (P.gw_direct) {
    partials = at::empty({P.gw_slices, k * k * k, c_in, c_out}, x.options());
    ops::direct_wgrad(P.gw_kernel, P.gw_x_ncdhw ? aligned16(x) : ndhwc(x), G, partials, k, P.stride, P.padding,
                      P.gw_taps_per_group, P.gw_x_ncdhw, G_ncdhw);
  } else {
    partials = at::empty({P.gw_slices, c_in, k, k, k, c_out}, x.options());
    const int64_t pad[3] = {P.padding, P.padding, P.padding}, st[3] = {P.stride, P.stride, P.stride};
    // Conv3d wgrad with dy := x and activation := grad_y (launch.grad_weight).
    const at::Tensor& gy_nc = G_ncdhw ? G : gy;
    const bool both_ncdhw = P.gw_x_ncdhw && P.gw_gy_ncdhw && !is_cl(x) && x.is_contiguous() && gy_nc.defined() &&
                            !is_cl(gy_nc) && gy_nc.is_contiguous();
    if (both_ncdhw && !P.gw_slabs.empty()) {
      return grad_weight_slabs(P, x, gy_nc, c_out, partials);
    } else if (both_ncdhw) {
      ops::wgrad(P.gw_kernel, aligned16(x), aligned16(gy_nc), partials, pad, st, true);
    } else {
      ops::wgrad(P.gw_kernel, ndhwc(x), G_ncdhw ? ndhwc(G) : G, partials, pad, st);
    }
  }
  at::Tensor gw = at::empty({c_in, c_out, k, k, k}, x.options());
  ops::wgrad_finish(partials, gw);
  return gw;
}

// The cuDNN TF32 flag for the duration of a native backward, restored on every exit.
struct CudnnTf32 {
  bool old;
  explicit CudnnTf32(bool on) : old(at::globalContext().allowTF32CuDNN()) { at::globalContext().setAllowTF32CuDNN(on); }
  ~CudnnTf32() { at::globalContext().setAllowTF32CuDNN(old); }
};

class ConvTranspose3dNode : public torch::autograd::Function<ConvTranspose3dNode> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& fwd_filter,
                            const std::optional<at::Tensor>& gi_filter, int64_t plan) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const Plan& P = plan_at(plan);
    ctx->save_for_backward({x, weight, gi_filter.has_value() ? *gi_filter : at::Tensor()});
    ctx->saved_data["plan"] = plan;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    return forward_pass(P, x, weight, fwd_filter, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    CONVT3D_SCOPE("convt3d::node.backward");
    const Plan& P = plan_at(ctx->saved_data["plan"].toInt());
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &gi_filter = saved[2];
    const at::Tensor& gy = grads[0];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const bool need_x = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    const bool need_b = has_bias && ctx->needs_input_grad(2);
    at::Tensor gx, gw, gb;
    if (at::GradMode::is_enabled()) {  // create_graph: the backward must itself be differentiable
      CudnnTf32 tf32(P.native_tf32);
      const int64_t s = P.stride, p = P.padding, op = P.output_padding;
      const int64_t c_out = weight.size(1);
      const std::vector<int64_t> bias_sizes{c_out};
      std::tie(gx, gw, gb) = at::convolution_backward(
          gy, x, weight, has_bias ? at::OptionalIntArrayRef(bias_sizes) : at::OptionalIntArrayRef(), {s, s, s},
          {p, p, p}, {1, 1, 1}, true, {op, op, op}, 1, {need_x, need_w, need_b});
    } else if (need_x || need_w || need_b) {
      at::Tensor G;  // grad_y as packed NDHWC, shared by both passes, or (G_ncdhw) as it is
      // Kernels that read a packed NCDHW grad_y in place (the exact-fp32 rows): no conversion at all
      // where every gradient asked for has one; the bias gradient then sums grad_y on its own.
      const bool G_ncdhw = !is_cl(gy) && gy.is_contiguous() && (need_x || need_w) &&
                           (!need_x || P.gi_gy_ncdhw) && (!need_w || P.gw_gy_ncdhw);
      // grad_input reads the NCDHW grad_y in place and writes the channels_last copy grad_weight reads, and
      // the bias gradient's sums (launch.grad_input_copying): no conversion pass at all.
      if (!G_ncdhw && P.gi_copies && need_x && need_w && !is_cl(gy) && gy.is_contiguous()) {
        at::Tensor src = aligned16(gy);
        G = at::empty({src.size(0), src.size(2), src.size(3), src.size(4), src.size(1)}, src.options());
        at::Tensor sums = at::empty({P.gi_sum_rows, src.size(1)}, src.options());
        gx = grad_input_pass(P, src, true, gi_filter, x, sums, G);
        if (need_b) gb = row_sums(sums);
        gw = grad_weight_pass(P, G, false, x, weight.size(1), gy);
        G = at::Tensor();
        return {to_format(gx, P.x_cl), gw, need_b ? gb : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
      }
      if (G_ncdhw) {
        G = aligned16(gy);
      } else if (!is_cl(gy) && need_x + need_w + need_b >= 2) {
        // One read of an NCDHW grad_y gives the channels_last copy and the bias gradient
        // (layouts.channels_last_with_sums).
        CONVT3D_SCOPE("convt3d::node.grad_y");
        at::Tensor src = gy.contiguous();
        G = at::empty({src.size(0), src.size(2), src.size(3), src.size(4), src.size(1)}, src.options());
        const int64_t positions = src.size(2) * src.size(3) * src.size(4);
        at::Tensor sums = at::empty({src.size(0), ops::transpose_tiles(positions), src.size(1)}, src.options());
        ops::transpose_layout(src, G, true, sums);
        gb = row_sums(sums);
      } else if (need_x || need_w) {
        G = ndhwc(gy);
      }
      // grad_weight first (launch.grad_weight_first): its temporaries are freed before grad_x is allocated,
      // so that the peak holds the larger of the two instead of both.
      if (need_w && P.gw_first) gw = grad_weight_pass(P, G, G_ncdhw, x, weight.size(1), gy);
      if (need_x) {
        // grad_input reads the NCDHW grad_y in place where its kernel can (gi_gy_ncdhw), grad_weight having read the
        // copy: the copy goes before grad_x exists (ops._backward, the same rule).
        at::Tensor Gi = G;
        bool gi_ncdhw = G_ncdhw;
        if (!G_ncdhw && G.defined() && P.gi_gy_ncdhw && need_w && P.gw_first && !is_cl(gy) && gy.is_contiguous()) {
          G = at::Tensor();
          Gi = aligned16(gy);
          gi_ncdhw = true;
        }
        // The bias gradient from grad_input's own read of grad_y, where its kernel can sum it.
        at::Tensor sums;
        if (need_b && !gb.defined() && P.gi_sum_rows > 0 && !gi_ncdhw)
          sums = at::empty({P.gi_sum_rows, Gi.size(4)}, Gi.options());
        gx = grad_input_pass(P, Gi, gi_ncdhw, gi_filter, x, sums);
        if (sums.defined()) gb = row_sums(sums);
      }
      if (need_w && !P.gw_first) gw = grad_weight_pass(P, G, G_ncdhw, x, weight.size(1), gy);
      // grad_y's channels_last_3d copy is released before grad_x is converted to NCDHW (a stock grad_input
      // writes channels_last_3d): the peak then holds the copy or the conversion's two grad_x, not all three
      // (v0.58 measured the step 11% over grad_weight's peak on U-Net 64->32 with them together).
      G = at::Tensor();
      if (need_x) gx = to_format(gx, P.x_cl);
      if (need_b && !gb.defined()) gb = channel_sums(gy);
    }
    if (!need_x) gx = at::Tensor();
    if (!need_w) gw = at::Tensor();
    if (!need_b) gb = at::Tensor();
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor eager_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          const at::Tensor& fwd_filter, const std::optional<at::Tensor>& gi_filter, int64_t plan) {
  return ConvTranspose3dNode::apply(x, weight, bias, fwd_filter, gi_filter, plan);
}

// Below autograd (inference mode, or tensors without autograd keys): the forward alone.
at::Tensor eager_forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const at::Tensor& fwd_filter, const std::optional<at::Tensor>& gi_filter, int64_t plan) {
  (void)gi_filter;
  return forward_pass(plan_at(plan), x, weight, fwd_filter, bias);
}

}  // namespace
}  // namespace eager
}  // namespace convt3d

TORCH_LIBRARY_FRAGMENT(convt3d_cutlass, m) {
  m.def("eager_plan(str fwd_kernel, int[] fwd_table, str gi_kernel, int[] gi_table, str gw_kernel, int[] ints) -> int",
        &convt3d::eager::register_plan);
  m.def("eager_conv_transpose3d(Tensor x, Tensor weight, Tensor? bias, Tensor fwd_filter, Tensor? gi_filter, "
        "int plan) -> Tensor");
}

TORCH_LIBRARY_IMPL(convt3d_cutlass, Autograd, m) {
  m.impl("eager_conv_transpose3d", &convt3d::eager::eager_autograd);
}

TORCH_LIBRARY_IMPL(convt3d_cutlass, CUDA, m) {
  m.impl("eager_conv_transpose3d", &convt3d::eager::eager_forward);
}
