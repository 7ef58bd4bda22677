// Thin torch binding: validates tensors, fills a ConvLaunch, runs the named kernel on the
// current stream, and turns CUTLASS / CUDA status codes into exceptions. Policy (which
// kernel, which precision, layouts, stride phases, fallbacks) lives in Python.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "binding_ops.h"
#include "conv_launch.h"
#include "direct_launch.h"
#include "layout_transpose.h"
#include "reductions.h"

namespace {

using convt3d::ConvLaunch;

// Numbers in error messages go through std::to_string, not c10::str's ostream: streaming an integer
// from this module crashed the process on the H100 image (a bad-shape call died with SIGSEGV instead
// of raising), while strings and literals raise cleanly.
std::string num(int64_t v) { return std::to_string(v); }

std::string dims(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

void check_operand(const at::Tensor& t, const char* what, const at::Device& dev) {
  TORCH_CHECK(t.is_cuda(), "convt3d_cutlass: ", what, " must be a CUDA tensor");
  TORCH_CHECK(t.device() == dev, "convt3d_cutlass: ", what, " is on ", t.device(),
              " but the result is on ", dev);
  TORCH_CHECK(t.scalar_type() == at::kFloat, "convt3d_cutlass: ", what, " must be float32, got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == 5 && t.is_contiguous(), "convt3d_cutlass: ", what,
              " must be a contiguous 5-d [N,D,H,W,C] / [K,T,R,S,C] tensor");
}

// A kernel's run() status as an exception: CUDA errors (1000 + cudaError_t) by name, CUTLASS
// statuses by cutlass::Status name.
void check_run(const char* name, int code) {
  if (code >= 1000) {
    TORCH_CHECK(false, "convt3d_cutlass: kernel ", name, " failed to launch: ",
                cudaGetErrorString(static_cast<cudaError_t>(code - 1000)));
  }
  TORCH_CHECK(code == 0, "convt3d_cutlass: kernel ", name, " cannot run this problem: cutlass::Status::",
              convt3d::status_name(code));
}

const convt3d::KernelEntry& lookup(const std::string& name) {
  const auto* e = convt3d::find_kernel(name);
  TORCH_CHECK(e != nullptr, "convt3d_cutlass: kernel '", name,
              "' is not compiled into this build (see convt3d_cutlass.configs())");
  return *e;
}

void check_implement(const convt3d::KernelEntry& e, const ConvLaunch& L) {
  int code = e.can_implement(L);
  TORCH_CHECK(code == 0, "convt3d_cutlass: kernel ", e.name, " cannot implement this problem: ",
              "cutlass::Status::", convt3d::status_name(code));
}

// The bias of a launch: null, or a contiguous float32 [channels] tensor on the result's device (`what` names
// its length in the message).
const float* bias_data(const std::optional<at::Tensor>& bias, const at::Device& dev, int64_t channels,
                       const char* what) {
  if (!bias.has_value()) return nullptr;
  TORCH_CHECK(bias->is_cuda() && bias->device() == dev && bias->scalar_type() == at::kFloat &&
                  bias->is_contiguous() && bias->numel() == channels,
              "convt3d_cutlass: bias must be a contiguous float32 [", what, "] tensor on ", dev);
  return bias->data_ptr<float>();
}

// Runs kernel e on L on dev's current stream; `checked`: check_implement already passed for this L.
void launch(const convt3d::KernelEntry& e, ConvLaunch& L, const at::Device& dev, bool checked = false) {
  const char* name = e.name;
  c10::cuda::CUDAGuard device_guard(dev);
  L.stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  if (!checked) check_implement(e, L);
  at::Tensor ws;
  std::size_t bytes = e.workspace_size(L);
  if (bytes > 0 && L.workspace != nullptr) {
    TORCH_CHECK(L.workspace_bytes >= bytes, "convt3d_cutlass: kernel ", name, " needs ", num(bytes),
                " bytes of workspace, got ", num(L.workspace_bytes));
  } else if (bytes > 0) {
    // Torch's caching allocator, so workspace is stream-ordered and graph-capturable.
    ws = at::empty({static_cast<int64_t>(bytes)}, at::TensorOptions().dtype(at::kByte).device(dev));
    L.workspace = ws.data_ptr();
    L.workspace_bytes = bytes;
  }
  CONVT3D_SCOPE("convt3d::run");
  check_run(name, e.run(L));
}

void launch(const std::string& name, ConvLaunch& L, const at::Device& dev) { launch(lookup(name), L, dev); }

// Workspace bytes kernel e needs for L (0 for none), 256-byte multiples so slices of one buffer stay
// aligned.
std::size_t workspace_bytes(const convt3d::KernelEntry& e, const ConvLaunch& L) {
  return (e.workspace_size(L) + 255) / 256 * 256;
}

void set_geometry(ConvLaunch& L, const at::Tensor& act, const at::Tensor& flt,
                  const at::Tensor& out, at::IntArrayRef pad, at::IntArrayRef stride) {
  TORCH_CHECK(pad.size() == 3 && stride.size() == 3, "convt3d_cutlass: pad and stride take 3 values");
  L.N = act.size(0); L.D = act.size(1); L.H = act.size(2); L.W = act.size(3); L.C = act.size(4);
  L.K = flt.size(0); L.T = flt.size(1); L.R = flt.size(2); L.S = flt.size(3);
  L.Z = out.size(1); L.P = out.size(2); L.Q = out.size(3);
  L.pad_d = pad[0]; L.pad_h = pad[1]; L.pad_w = pad[2];
  L.stride_d = stride[0]; L.stride_h = stride[1]; L.stride_w = stride[2];
  TORCH_CHECK(flt.size(4) == L.C && out.size(4) == L.K && out.size(0) == L.N,
              "convt3d_cutlass: operand shapes disagree: activation ", dims(act.sizes()), ", filter ",
              dims(flt.sizes()), ", output ", dims(out.sizes()));
}

}  // namespace

namespace convt3d {
namespace torch_ops {

// Serial split-K (conv_kernel.cuh): split_k slices of the GEMM's reduction, each tile's added into the
// result in slice order; > 1 for stride phases that would otherwise set the pace (selector.phase_split_k).
static void set_split_k(ConvLaunch& L, int64_t split_k) {
  TORCH_CHECK(split_k >= 1 && split_k <= 64, "convt3d_cutlass: split_k must be 1 to 64, got ", num(split_k));
  L.split_k_slices = static_cast<int>(split_k);
}

// The fork/join events of dgrad_phases, created once per thread and device and recorded again on every
// call (a wait takes the event's state when it is enqueued, so a later record does not disturb it). A
// torch CUDAEvent per fork and join cost an event creation and destruction each, 18 driver calls per
// stock-phase forward on the host path of the small fp32 layers.
const std::vector<cudaEvent_t>& fork_join_events(int device, size_t count) {
  thread_local std::vector<std::vector<cudaEvent_t>> per_device;
  if (per_device.size() <= static_cast<size_t>(device)) per_device.resize(device + 1);
  auto& ev = per_device[device];
  while (ev.size() < count) {
    cudaEvent_t e;
    C10_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ev.push_back(e);
  }
  return ev;
}

// The ConvLaunch of dgrad() below, checked, without running it. dx is packed, or a strided NDHWC view with
// packed channels, whose strides go to L.result_stride.
static ConvLaunch dgrad_launch(const at::Tensor& dy, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                               at::Tensor& dx, at::IntArrayRef pad, int64_t split_k) {
  const auto dev = dx.device();
  const bool view = !dx.is_contiguous();
  if (view) {
    TORCH_CHECK(dx.is_cuda() && dx.device() == dev && dx.scalar_type() == at::kFloat && dx.dim() == 5 &&
                    dx.stride(4) == 1, "convt3d_cutlass: a strided dgrad result must be a float32 [N,D,H,W,C] "
                "CUDA view with packed channels");
  } else {
    check_operand(dx, "dgrad result", dev);
  }
  check_operand(dy, "dgrad dy", dev);
  check_operand(filter, "dgrad filter", dev);
  ConvLaunch L;
  int64_t one[3] = {1, 1, 1};
  set_geometry(L, dx, filter, dy, pad, at::IntArrayRef(one, 3));
  set_split_k(L, split_k);
  L.output = dy.data_ptr<float>();
  L.filter = filter.data_ptr<float>();
  L.result = dx.data_ptr<float>();
  if (view)
    for (int a = 0; a < 4; ++a) L.result_stride[a] = dx.stride(3 - a);  // w, h, d, n
  L.bias = bias_data(bias, dev, L.C, "C");
  return L;
}

// result dx [N,D,H,W,C] = dgrad(dy [N,Z,P,Q,K], filter [K,T,R,S,C]) (+ bias[C]), unit stride.
void dgrad(const std::string& kernel, const at::Tensor& dy, const at::Tensor& filter,
           const std::optional<at::Tensor>& bias, at::Tensor& dx, at::IntArrayRef pad, int64_t split_k) {
  CONVT3D_SCOPE("convt3d::stock");
  ConvLaunch L = dgrad_launch(dy, filter, bias, dx, pad, split_k);
  launch(kernel, L, dx.device());
}

// y [N,Zo,Po,Qo,K] (an NDHWC view) = the transposed convolution at stride s > 1 as unit-stride dgrad
// phases over dy [N,Z,P,Q,K'] (see dgrad above); phase i runs kernels[i] with filters[i] and the 9 ints
// phases[9i..9i+8] = pad (d, h, w), first output (d, h, w), count (d, h, w) and split_k[i] slices
// (empty: 1 each), writing the strided view y[:, first::s, ...] in place: the kernels' strided epilogue
// (conv_kernel.cuh, StridedKernel) places each output row by the view's strides. A phase whose view the
// kernel refuses (its 32-bit offsets past 2^31 elements) goes through a packed temporary and a copy.
//
// grouped (the default): where every phase runs the same kernel in place and there are at most
// kMaxGroupedPhases of them (stride 2), all in one launch (conv_kernel.cuh, grouped_phases_kernel): one
// grid, no fork or join. Else, and with grouped false (kept for A/B), one launch per phase on side streams:
// each phase is a small GEMM whose grid alone leaves SMs idle, and launched one after another from Python
// the phases cost more host time than GPU time (gan3d-g1, eight phases: 0.63 ms of host per call against
// 0.45 ms of kernels, H100 v0.18). The phases fork
// from the current stream and join back into it; every temporary (the fallback outputs and the serial
// split-K semaphores) is allocated on the current stream and outlives the join, so the caching allocator
// cannot hand it out while a side stream uses it. (Allocated on the side streams, which the pool hands
// out round-robin, they cost the first calls new segments per stream, and again after each
// empty_cache: 3D-GAN 256->128 timed 2.3 ms a step in the sweep against 1.6 in a warm loop.)
// The strided view y[:, first::s, ...] of one phase (q: its 9 ints) as a ConvLaunch over dy with the
// phase filter at `flt` [K', taps[0], taps[1], taps[2], C]: arithmetic on y's strides, no view tensors (eight
// phases' slicing cost the small fp32 layers' forwards tens of microseconds of host time).
static ConvLaunch phase_launch(const at::Tensor& dy, const float* flt, const int64_t* taps, const float* bias,
                               const at::Tensor& y, const int64_t* q, int64_t stride, int64_t split_k, size_t i) {
  for (int a = 0; a < 3; ++a) {
    const int64_t size = y.size(1 + a), first = q[3 + a];
    TORCH_CHECK(first >= 0 && first < size && q[6 + a] == (size - first + stride - 1) / stride && q[a] >= 0 &&
                    taps[a] >= 1,
                "convt3d_cutlass: dgrad_phases phase ", num(static_cast<int64_t>(i)), " (pad ",
                dims(at::IntArrayRef(q, 3)), ", first ", dims(at::IntArrayRef(q + 3, 3)), ", counts ",
                dims(at::IntArrayRef(q + 6, 3)), ", taps ", dims(at::IntArrayRef(taps, 3)),
                ") does not fit the result ", dims(y.sizes()), " at stride ", num(stride));
  }
  ConvLaunch L;
  L.N = y.size(0); L.D = q[6]; L.H = q[7]; L.W = q[8]; L.C = y.size(4);
  L.K = dy.size(4); L.T = taps[0]; L.R = taps[1]; L.S = taps[2];
  L.Z = dy.size(1); L.P = dy.size(2); L.Q = dy.size(3);
  L.pad_d = q[0]; L.pad_h = q[1]; L.pad_w = q[2];
  set_split_k(L, split_k);
  L.output = dy.data_ptr<float>();
  L.filter = flt;
  L.result = y.data_ptr<float>() + q[3] * y.stride(1) + q[4] * y.stride(2) + q[5] * y.stride(3);
  L.result_stride[0] = y.stride(3) * stride;  // w, h, d, n
  L.result_stride[1] = y.stride(2) * stride;
  L.result_stride[2] = y.stride(1) * stride;
  L.result_stride[3] = y.stride(0);
  L.bias = bias;
  return L;
}

// dgrad_phases below with the phase filters given as pointers and their taps (3 per phase), checked by the
// caller: the op (one filter tensor per phase) and the eager node (one flat filter, phases end to end).
static void run_dgrad_phases(const std::vector<std::string>& kernels, const at::Tensor& dy,
                             const std::vector<const float*>& flts, at::IntArrayRef taps,
                             const std::optional<at::Tensor>& bias, at::Tensor& y, at::IntArrayRef phases,
                             int64_t stride, at::IntArrayRef split_k, bool grouped) {
  const size_t n = kernels.size();
  const auto dev = y.device();
  c10::cuda::CUDAGuard device_guard(dev);
  const float* b = bias_data(bias, dev, y.size(4), "C");
  // Every phase looked up and checked before any is launched; its entry is kept for the launch.
  std::vector<const convt3d::KernelEntry*> entries;
  std::vector<ConvLaunch> launches;
  std::vector<std::size_t> ws_offset;
  std::size_t ws_total = 0;
  std::vector<at::Tensor> tmps(n);  // defined for the phases written through a temporary
  for (size_t i = 0; i < n; ++i) {
    entries.push_back(i > 0 && kernels[i] == kernels[i - 1] ? entries[i - 1] : &lookup(kernels[i]));
    const int64_t slices = split_k.empty() ? 1 : split_k[i];
    const int64_t* q = phases.data() + 9 * i;
    launches.push_back(phase_launch(dy, flts[i], taps.data() + 3 * i, b, y, q, stride, slices, i));
    if (entries[i]->can_implement(launches.back()) != 0) {  // the view refused: a packed temporary
      tmps[i] = at::empty({y.size(0), q[6], q[7], q[8], y.size(4)}, y.options());
      ConvLaunch& L = launches.back();
      L.result = tmps[i].data_ptr<float>();
      for (auto& st : L.result_stride) st = 0;
      check_implement(*entries[i], L);
    }
    ws_offset.push_back(ws_total);
    ws_total += workspace_bytes(*entries[i], launches.back());
  }
  // One launch for all phases (the kernel's run_phases) where they share a kernel and write the result in
  // place; else one launch per phase on side streams (below). `grouped` false: always the latter.
  bool one_launch = grouped && n <= static_cast<size_t>(convt3d::kMaxGroupedPhases) &&
                    entries[0]->run_phases != nullptr;
  for (size_t i = 0; i < n && one_launch; ++i) one_launch = entries[i] == entries[0] && !tmps[i].defined();
  at::Tensor ws;
  const auto main = c10::cuda::getCurrentCUDAStream(dev.index());
  if (ws_total > 0) {
    // Every phase's serial split-K semaphores zeroed by one memset here, not one per phase in CUTLASS's
    // initialize() (ConvLaunch::workspace_zeroed).
    ws = at::empty({static_cast<int64_t>(ws_total)}, y.options().dtype(at::kByte));
    C10_CUDA_CHECK(cudaMemsetAsync(ws.data_ptr(), 0, ws_total, main.stream()));
  }
  auto set_workspace = [&](size_t i) {
    ConvLaunch& L = launches[i];
    const std::size_t next = i + 1 < n ? ws_offset[i + 1] : ws_total;
    if (next > ws_offset[i]) {
      L.workspace = static_cast<uint8_t*>(ws.data_ptr()) + ws_offset[i];
      L.workspace_bytes = next - ws_offset[i];
      L.workspace_zeroed = true;
    }
  };
  if (one_launch) {
    for (size_t i = 0; i < n; ++i) {
      set_workspace(i);
      launches[i].stream = main.stream();
    }
    check_run(entries[0]->name, entries[0]->run_phases(launches.data(), static_cast<int>(n)));
    return;
  }
  const size_t n_side = std::min<size_t>(n, 8);
  const std::vector<cudaEvent_t>& ev = fork_join_events(dev.index(), n_side + 1);
  C10_CUDA_CHECK(cudaEventRecord(ev[0], main.stream()));
  std::vector<c10::cuda::CUDAStream> side;
  for (size_t j = 0; j < n_side; ++j) {
    side.push_back(c10::cuda::getStreamFromPool(false, dev.index()));
    C10_CUDA_CHECK(cudaStreamWaitEvent(side.back().stream(), ev[0], 0));
  }
  // Joined on the way out of a failing phase too: its exception frees the temporaries, which the
  // phases already launched may still be writing.
  auto join = [&] {
    for (size_t j = 0; j < side.size(); ++j) {
      C10_CUDA_CHECK(cudaEventRecord(ev[j + 1], side[j].stream()));
      C10_CUDA_CHECK(cudaStreamWaitEvent(main.stream(), ev[j + 1], 0));
    }
  };
  try {
    for (size_t i = 0; i < n; ++i) {
      c10::cuda::CUDAStreamGuard on(side[i % side.size()]);
      set_workspace(i);
      launch(*entries[i], launches[i], dev, /*checked=*/true);
      if (tmps[i].defined()) {
        const int64_t* q = phases.data() + 9 * i;
        y.slice(1, q[3], std::nullopt, stride).slice(2, q[4], std::nullopt, stride)
            .slice(3, q[5], std::nullopt, stride).copy_(tmps[i]);
      }
    }
  } catch (...) {
    join();
    throw;
  }
  join();
}

static void check_phases_args(size_t n, size_t n_filters, const at::Tensor& dy, const at::Tensor& y,
                              at::IntArrayRef phases, int64_t stride, at::IntArrayRef split_k) {
  TORCH_CHECK(n >= 1 && n_filters == n && phases.size() == 9 * n && stride > 1 &&
                  (split_k.empty() || split_k.size() == n),
              "convt3d_cutlass: dgrad_phases takes one kernel, one filter, 9 ints and (optionally) one split_k "
              "per phase, stride > 1");
  TORCH_CHECK(y.is_cuda() && y.scalar_type() == at::kFloat && y.dim() == 5 && y.stride(4) == 1,
              "convt3d_cutlass: dgrad_phases result must be a float32 [N,D,H,W,C] CUDA view with packed channels");
  check_operand(dy, "dgrad dy", y.device());
  TORCH_CHECK(dy.size(0) == y.size(0), "convt3d_cutlass: dgrad_phases dy ", dims(dy.sizes()), " and result ",
              dims(y.sizes()), " disagree on N");
}

void dgrad_phases(const std::vector<std::string>& kernels, const at::Tensor& dy, at::TensorList filters,
                  const std::optional<at::Tensor>& bias, at::Tensor& y, at::IntArrayRef phases, int64_t stride,
                  at::IntArrayRef split_k, bool grouped) {
  CONVT3D_SCOPE("convt3d::stock");
  const size_t n = kernels.size();
  check_phases_args(n, filters.size(), dy, y, phases, stride, split_k);
  std::vector<const float*> flts;
  std::vector<int64_t> taps;
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& f = filters[i];
    check_operand(f, "dgrad filter", y.device());
    TORCH_CHECK(f.size(0) == dy.size(4) && f.size(4) == y.size(4), "convt3d_cutlass: dgrad_phases filter ",
                num(static_cast<int64_t>(i)), " ", dims(f.sizes()), " does not take dy ", dims(dy.sizes()),
                " to the result ", dims(y.sizes()));
    flts.push_back(f.data_ptr<float>());
    taps.insert(taps.end(), {f.size(1), f.size(2), f.size(3)});
  }
  run_dgrad_phases(kernels, dy, flts, taps, bias, y, phases, stride, split_k, grouped);
}

void dgrad_phases_flat(const std::vector<std::string>& kernels, const at::Tensor& dy, const at::Tensor& filter,
                       at::IntArrayRef taps, const std::optional<at::Tensor>& bias, at::Tensor& y,
                       at::IntArrayRef phases, int64_t stride, at::IntArrayRef split_k) {
  CONVT3D_SCOPE("convt3d::stock");
  const size_t n = kernels.size();
  check_phases_args(n, taps.size() / 3, dy, y, phases, stride, split_k);
  TORCH_CHECK(taps.size() == 3 * n && filter.is_cuda() && filter.device() == y.device() &&
                  filter.scalar_type() == at::kFloat && filter.is_contiguous(),
              "convt3d_cutlass: dgrad_phases_flat takes a contiguous float32 CUDA filter and 3 taps per phase");
  std::vector<const float*> flts;
  const float* base = filter.data_ptr<float>();
  int64_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    flts.push_back(base + offset);
    offset += dy.size(4) * taps[3 * i] * taps[3 * i + 1] * taps[3 * i + 2] * y.size(4);
  }
  TORCH_CHECK(offset == filter.numel(), "convt3d_cutlass: the stock phases' flat filter has ",
              num(filter.numel()), " elements, its phases take ", num(offset));
  run_dgrad_phases(kernels, dy, flts, taps, bias, y, phases, stride, split_k, true);
}

// result y [N,Z,P,Q,K] = fprop(x [N,D,H,W,C], filter [K,T,R,S,C]) (+ bias[K]).
// ncdhw: x is packed [N,C,D,H,W] and y packed [N,K,Z,P,Q], read and written in that storage by a kernel that can
// (KernelEntry::reads_ncdhw); any other kernel is refused.
void fprop(const std::string& kernel, const at::Tensor& x, const at::Tensor& filter,
           const std::optional<at::Tensor>& bias, at::Tensor& y, at::IntArrayRef pad,
           at::IntArrayRef stride, int64_t split_k, bool ncdhw) {
  CONVT3D_SCOPE("convt3d::stock");
  const auto dev = y.device();
  check_operand(y, "fprop result", dev);
  check_operand(x, "fprop input", dev);
  check_operand(filter, "fprop filter", dev);
  const auto& e = lookup(kernel);
  TORCH_CHECK(!ncdhw || e.reads_ncdhw, "convt3d_cutlass: fprop kernel ", kernel,
              " reads NDHWC operands only (ncdhw=True needs a kernel that takes NCDHW ones)");
  ConvLaunch L;
  if (ncdhw) {
    set_geometry(L, x.permute({0, 2, 3, 4, 1}), filter, y.permute({0, 2, 3, 4, 1}), pad, stride);
  } else {
    set_geometry(L, x, filter, y, pad, stride);
  }
  L.ncdhw = ncdhw;
  L.activation = x.data_ptr<float>();
  L.filter = filter.data_ptr<float>();
  L.result = y.data_ptr<float>();
  L.bias = bias_data(bias, dev, L.K, "K");
  set_split_k(L, split_k);
  launch(e, L, dev);
}

// partials [split_k, K,T,R,S,C] = wgrad(dy [N,Z,P,Q,K], x [N,D,H,W,C]); one slice per K split.
// The caller sums the slices in a fixed order, so the result is bitwise deterministic.
// ncdhw: dy is packed [N,K,Z,P,Q] and x packed [N,C,D,H,W], read in that storage by a kernel that can
// (KernelEntry::reads_ncdhw); any other kernel is refused.
void wgrad(const std::string& kernel, const at::Tensor& dy, const at::Tensor& x,
           at::Tensor& partials, at::IntArrayRef pad, at::IntArrayRef stride, bool ncdhw) {
  CONVT3D_SCOPE("convt3d::stock");
  const auto dev = partials.device();
  TORCH_CHECK(partials.dim() == 6 && partials.is_contiguous() &&
                  partials.scalar_type() == at::kFloat && partials.device() == dev,
              "convt3d_cutlass: wgrad partials must be a contiguous float32 [split_k,K,T,R,S,C] tensor");
  check_operand(dy, "wgrad dy", dev);
  check_operand(x, "wgrad input", dev);
  const auto& e = lookup(kernel);
  TORCH_CHECK(!ncdhw || e.reads_ncdhw, "convt3d_cutlass: wgrad kernel ", kernel,
              " reads NDHWC operands only (ncdhw=True needs a kernel that takes NCDHW ones)");
  at::Tensor slice0 = partials.select(0, 0);
  ConvLaunch L;
  if (ncdhw) {
    set_geometry(L, x.permute({0, 2, 3, 4, 1}), slice0, dy.permute({0, 2, 3, 4, 1}), pad, stride);
  } else {
    set_geometry(L, x, slice0, dy, pad, stride);
  }
  L.ncdhw = ncdhw;
  L.split_k_slices = static_cast<int>(partials.size(0));
  L.output = dy.data_ptr<float>();
  L.activation = x.data_ptr<float>();
  L.result = partials.data_ptr<float>();
  launch(e, L, dev);
}

// out [N,Do,Ho,Wo,Co] = tap-reuse conv of in [N,Di,Hi,Wi,Cr] (see direct_launch.h). `phases` holds
// 13 integers per phase: first[3], count[3], dmin[3], taps[3], weight offset (elements); sum_phases: all
// phases add into one output (see direct_launch.h).
// out is [N, Do, Ho, Wo, Co], or [N, Co, Do, Ho, Wo] with out_ncdhw; in is [N, Di, Hi, Wi, Cr], or
// [N, Cr, Di, Hi, Wi] with in_ncdhw (kernels that take them so; the others raise). in_sums, a packed
// [rows, Cr] buffer, receives sums of the input over positions whose rows add up to the total (the
// kernels that can; the others raise). in_copy (with in_ncdhw and in_sums), a packed [N, Di, Hi, Wi, Cr]
// buffer, receives the input in channels_last order (the warp-specialized Hopper rows that can; the others raise).
void direct(const std::string& kernel, const at::Tensor& in, const at::Tensor& weight,
            const std::optional<at::Tensor>& bias, at::Tensor& out, at::IntArrayRef phases,
            int64_t s_in, int64_t s_out, bool out_ncdhw, bool in_ncdhw, const std::optional<at::Tensor>& in_sums,
            bool sum_phases, bool out_sectors, const std::optional<at::Tensor>& in_copy) {
  CONVT3D_SCOPE("convt3d::direct");
  const auto dev = out.device();
  check_operand(out, "direct result", dev);
  check_operand(in, "direct input", dev);
  TORCH_CHECK(weight.is_cuda() && weight.device() == dev && weight.scalar_type() == at::kFloat &&
                  weight.is_contiguous(), "convt3d_cutlass: direct weight must be a contiguous float32 "
              "CUDA tensor on ", dev);
  const auto* e = convt3d::find_direct(kernel);
  TORCH_CHECK(e != nullptr, "convt3d_cutlass: kernel '", kernel,
              "' is not compiled into this build (see convt3d_cutlass.configs())");
  TORCH_CHECK(phases.size() % 13 == 0 && !phases.empty() &&
                  phases.size() / 13 <= static_cast<size_t>(convt3d::kDirectMaxPhases),
              "convt3d_cutlass: direct phases must be 13 integers per phase, 1 to ",
              num(convt3d::kDirectMaxPhases), " phases");
  convt3d::DirectLaunch L;
  L.N = in.size(0);
  if (in_ncdhw) {
    L.Cr = in.size(1); L.Di = in.size(2); L.Hi = in.size(3); L.Wi = in.size(4);
  } else {
    L.Di = in.size(1); L.Hi = in.size(2); L.Wi = in.size(3); L.Cr = in.size(4);
  }
  L.in_ncdhw = in_ncdhw;
  L.out_ncdhw = out_ncdhw;
  L.out_sectors = out_ncdhw && out_sectors;
  L.sum_phases = sum_phases;
  if (out_ncdhw) {
    L.Co = out.size(1); L.Do = out.size(2); L.Ho = out.size(3); L.Wo = out.size(4);
  } else {
    L.Do = out.size(1); L.Ho = out.size(2); L.Wo = out.size(3); L.Co = out.size(4);
  }
  TORCH_CHECK(out.size(0) == L.N, "convt3d_cutlass: direct batch sizes differ");
  L.s_in = static_cast<int>(s_in);
  L.s_out = static_cast<int>(s_out);
  L.num_phases = static_cast<int>(phases.size() / 13);
  const bool wfold = e->w_counts_inputs;
  for (int i = 0; i < L.num_phases; ++i) {
    const int64_t* v = phases.data() + 13 * i;
    auto& ph = L.phase[i];
    int64_t taps = 1;
    for (int a = 0; a < 3; ++a) {
      ph.first[a] = v[a]; ph.count[a] = v[3 + a]; ph.dmin[a] = v[6 + a]; ph.taps[a] = v[9 + a];
      taps *= v[9 + a];
      const int64_t last = v[a] + s_out * (v[3 + a] - 1);
      const int64_t extent = a == 0 ? L.Do : a == 1 ? L.Ho : L.Wo;
      TORCH_CHECK(v[3 + a] == 0 || (a == 2 && wfold ? v[3 + a] > 0 : v[a] >= 0 && last < extent),
                  "convt3d_cutlass: direct phase ", num(i), " writes outside the output");
    }
    ph.w_offset = v[12];
    TORCH_CHECK(v[12] >= 0 && v[12] + taps * L.Co * L.Cr <= weight.numel(),
                "convt3d_cutlass: direct phase ", num(i), " reads outside the weight");
  }
  L.in = in.data_ptr<float>();
  L.weight = weight.data_ptr<float>();
  L.out = out.data_ptr<float>();
  L.bias = bias_data(bias, dev, L.Co, "C_out");
  if (in_sums.has_value()) {
    const auto& t = *in_sums;
    TORCH_CHECK(t.is_cuda() && t.device() == dev && t.scalar_type() == at::kFloat && t.is_contiguous() &&
                    t.dim() == 2 && t.size(1) == L.Cr && t.size(0) <= INT32_MAX &&
                    reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0,
                "convt3d_cutlass: direct in_sums must be a contiguous, 16-byte aligned float32 [rows, C] "
                "CUDA tensor on ", dev, " with C = ", num(L.Cr));
    L.in_sums = t.data_ptr<float>();
    L.in_sums_rows = static_cast<int>(t.size(0));
  }
  if (in_copy.has_value()) {
    const auto& t = *in_copy;
    TORCH_CHECK(in_ncdhw && in_sums.has_value(), "convt3d_cutlass: direct in_copy needs in_ncdhw and in_sums");
    TORCH_CHECK(t.is_cuda() && t.device() == dev && t.scalar_type() == at::kFloat && t.is_contiguous() &&
                    t.dim() == 5 && t.size(0) == L.N && t.size(1) == L.Di && t.size(2) == L.Hi && t.size(3) == L.Wi &&
                    t.size(4) == L.Cr && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0,
                "convt3d_cutlass: direct in_copy must be a contiguous, 16-byte aligned float32 [N, D, H, W, C] "
                "CUDA tensor on ", dev, " of the input's sizes");
    L.in_copy = t.data_ptr<float>();
  }
  c10::cuda::CUDAGuard device_guard(dev);
  L.stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  {
    CONVT3D_SCOPE("convt3d::run");  // the kernel's tensor maps and launch, apart from the checks above
    check_run(kernel.c_str(), e->run(L));
  }
}

// partials [slices, k^3, Ci, Co] = per-slice weight gradient sums (see direct_launch.h) from
// x [N,Di,Hi,Wi,Ci] and grad_y [N,Do,Ho,Wo,Co]; taps_per_group (kh, kw) taps per CTA.
// x is [N, D, H, W, C_in], or [N, C_in, D, H, W] with x_ncdhw; grad_y [N, Do, Ho, Wo, C_out], or
// [N, C_out, Do, Ho, Wo] with gy_ncdhw (kernels that read them so; the others raise).
void direct_wgrad(const std::string& kernel, const at::Tensor& x, const at::Tensor& grad_y, at::Tensor& partials,
                  int64_t k, int64_t stride, int64_t padding, int64_t taps_per_group, bool x_ncdhw,
                  bool gy_ncdhw) {
  CONVT3D_SCOPE("convt3d::direct_wgrad");
  const auto dev = partials.device();
  check_operand(x, "direct_wgrad x", dev);
  check_operand(grad_y, "direct_wgrad grad_y", dev);
  TORCH_CHECK(partials.is_cuda() && partials.scalar_type() == at::kFloat && partials.is_contiguous() &&
                  partials.dim() == 4,
              "convt3d_cutlass: direct_wgrad partials must be a contiguous float32 [slices, k^3, C_in, C_out] "
              "CUDA tensor");
  const auto* e = convt3d::find_direct_wgrad(kernel);
  TORCH_CHECK(e != nullptr, "convt3d_cutlass: kernel '", kernel,
              "' is not compiled into this build (see convt3d_cutlass.configs())");
  TORCH_CHECK(k >= 1 && stride >= 1 && padding >= 0 && taps_per_group >= 1,
              "convt3d_cutlass: direct_wgrad needs k, stride, taps_per_group >= 1 and padding >= 0");
  convt3d::DirectWgradLaunch L;
  L.x_ncdhw = x_ncdhw;
  L.N = x.size(0);
  if (x_ncdhw) {
    L.Ci = x.size(1); L.Di = x.size(2); L.Hi = x.size(3); L.Wi = x.size(4);
  } else {
    L.Di = x.size(1); L.Hi = x.size(2); L.Wi = x.size(3); L.Ci = x.size(4);
  }
  L.gy_ncdhw = gy_ncdhw;
  if (gy_ncdhw) {
    L.Co = grad_y.size(1); L.Do = grad_y.size(2); L.Ho = grad_y.size(3); L.Wo = grad_y.size(4);
  } else {
    L.Do = grad_y.size(1); L.Ho = grad_y.size(2); L.Wo = grad_y.size(3); L.Co = grad_y.size(4);
  }
  TORCH_CHECK(grad_y.size(0) == L.N, "convt3d_cutlass: direct_wgrad batch sizes differ");
  TORCH_CHECK(partials.size(1) == k * k * k && partials.size(2) == L.Ci && partials.size(3) == L.Co,
              "convt3d_cutlass: direct_wgrad partials must be [slices, k^3, C_in, C_out]");
  L.k = static_cast<int>(k);
  L.stride = static_cast<int>(stride);
  L.pad = static_cast<int>(padding);
  L.slices = static_cast<int>(partials.size(0));
  L.taps_per_group = static_cast<int>(taps_per_group);
  L.tap_groups = static_cast<int>((k * k + taps_per_group - 1) / taps_per_group);
  L.x = x.data_ptr<float>();
  L.gy = grad_y.data_ptr<float>();
  L.partials = partials.data_ptr<float>();
  c10::cuda::CUDAGuard device_guard(dev);
  L.stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  {
    CONVT3D_SCOPE("convt3d::run");  // the kernel's tensor maps and launch, apart from the checks above
    check_run(kernel.c_str(), e->run(L));
  }
}

// dst = src with the channel axis moved: NCDHW -> NDHWC (to_channels_last) or back. Both are
// packed 5-d float32 tensors on one device; shapes are checked against each other. sums (NCDHW ->
// NDHWC only): per-tile channel sums of src, [N, transpose_tiles(D*H*W), C], for the bias gradient.
void transpose_layout(const at::Tensor& src, at::Tensor& dst, bool to_channels_last,
                      const std::optional<at::Tensor>& sums) {
  CONVT3D_SCOPE("convt3d::transpose");
  const auto dev = dst.device();
  // To channels_last_3d, src may also be a depth slab of a packed NCDHW tensor (src.narrow(2, ...)): each
  // channel's positions contiguous, channels and samples further apart (launch.grad_weight's slabs).
  const bool slab = to_channels_last && src.dim() == 5 && !src.is_contiguous() && src.stride(4) == 1 &&
                    src.stride(3) == src.size(4) && src.stride(2) == src.size(3) * src.size(4) &&
                    src.stride(1) >= src.size(2) * src.stride(2) &&
                    (src.size(0) == 1 || src.stride(0) == src.size(1) * src.stride(1));
  TORCH_CHECK(src.is_cuda() && src.device() == dev && src.scalar_type() == at::kFloat &&
                  dst.scalar_type() == at::kFloat && (src.is_contiguous() || slab) && dst.is_contiguous() &&
                  src.dim() == 5 && dst.dim() == 5,
              "convt3d_cutlass: transpose_layout needs packed 5-d float32 CUDA tensors on one device (to "
              "channels_last_3d, src may be a depth slab of a packed NCDHW one)");
  const int64_t n = src.size(0);
  const int64_t c = to_channels_last ? src.size(1) : src.size(4);
  const int64_t s = src.numel() / std::max<int64_t>(1, n * c);
  TORCH_CHECK(dst.size(0) == n && dst.numel() == src.numel() && (to_channels_last ? dst.size(4) : dst.size(1)) == c,
              "convt3d_cutlass: transpose_layout shapes do not match");
  float* sums_ptr = nullptr;
  if (sums.has_value()) {
    const auto& t = *sums;
    TORCH_CHECK(to_channels_last, "convt3d_cutlass: transpose_layout sums only with to_channels_last");
    TORCH_CHECK(t.device() == dev && t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == 3 &&
                    t.size(0) == n && t.size(1) == convt3d::layout_transpose_tiles(s) && t.size(2) == c,
                "convt3d_cutlass: transpose_layout sums must be a packed float32 [N, transpose_tiles(D*H*W), C] "
                "tensor on the result's device");
    sums_ptr = t.data_ptr<float>();
  }
  c10::cuda::CUDAGuard device_guard(dev);
  const auto stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  check_run("transpose_layout", convt3d::layout_transpose(src.data_ptr<float>(), dst.data_ptr<float>(), sums_ptr,
                                                          n, c, s, to_channels_last, stream,
                                                          slab ? src.stride(1) : 0, slab ? src.stride(0) : 0));
}

int64_t transpose_tiles(int64_t positions) { return convt3d::layout_transpose_tiles(positions); }

// out [C] = sums of src over every axis but its last (src packed, [..., C]): the bias gradient of an
// NDHWC grad_y, or of the partial rows a kernel summed it into, in a fixed order. The first stage's
// workspace comes from torch's caching allocator.
void channel_sums(const at::Tensor& src, at::Tensor& out) {
  CONVT3D_SCOPE("convt3d::channel_sums");
  const auto dev = out.device();
  TORCH_CHECK(src.is_cuda() && src.device() == dev && src.scalar_type() == at::kFloat && src.is_contiguous() &&
                  src.dim() >= 1 && out.scalar_type() == at::kFloat && out.is_contiguous() && out.dim() == 1 &&
                  out.size(0) == src.size(-1),
              "convt3d_cutlass: channel_sums needs a packed float32 [..., C] CUDA source and a [C] result on "
              "its device");
  const int64_t c = src.size(-1), rows = c > 0 ? src.numel() / c : 0;
  // Short sources (the kernels' partial rows) run in one launch without a workspace.
  const int64_t work_floats = convt3d::channel_sums_work(rows, c);
  at::Tensor work = work_floats > 0 ? at::empty({work_floats}, src.options()) : at::Tensor();
  c10::cuda::CUDAGuard device_guard(dev);
  const auto stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  check_run("channel_sums", convt3d::channel_sums(src.data_ptr<float>(), out.data_ptr<float>(),
                                                  work.defined() ? work.data_ptr<float>() : nullptr, rows, c,
                                                  stream));
}

// out [C_in, C_out, k, k, k] = sum over slices of partials: [slices, k^3, C_in, C_out] (tap-reuse
// kernels) or [slices, C_in, k, k, k, C_out] (stock wgrad), in a fixed order, any number of slices.
void wgrad_finish(const at::Tensor& partials, at::Tensor& out) {
  CONVT3D_SCOPE("convt3d::wgrad_finish");
  const auto dev = out.device();
  TORCH_CHECK(partials.is_cuda() && partials.device() == dev && partials.scalar_type() == at::kFloat &&
                  partials.is_contiguous() && (partials.dim() == 4 || partials.dim() == 6) &&
                  out.scalar_type() == at::kFloat && out.is_contiguous() && out.dim() == 5,
              "convt3d_cutlass: wgrad_finish needs packed float32 partials [S, k^3, C_in, C_out] or "
              "[S, C_in, k, k, k, C_out] and a packed [C_in, C_out, k, k, k] result on one device");
  const int64_t ci = out.size(0), co = out.size(1), taps = out.size(2) * out.size(3) * out.size(4);
  const int64_t slices = partials.size(0);
  int64_t s_t, s_ci;
  if (partials.dim() == 4) {
    TORCH_CHECK(partials.size(1) == taps && partials.size(2) == ci && partials.size(3) == co,
                "convt3d_cutlass: wgrad_finish partials ", dims(partials.sizes()), " do not match the result ",
                dims(out.sizes()));
    s_t = ci * co; s_ci = co;
  } else {
    TORCH_CHECK(partials.size(1) == ci && partials.size(2) == out.size(2) && partials.size(3) == out.size(3) &&
                    partials.size(4) == out.size(4) && partials.size(5) == co,
                "convt3d_cutlass: wgrad_finish partials ", dims(partials.sizes()), " do not match the result ",
                dims(out.sizes()));
    s_t = co; s_ci = taps * co;
  }
  c10::cuda::CUDAGuard device_guard(dev);
  const auto stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  check_run("wgrad_finish", convt3d::wgrad_finish(partials.data_ptr<float>(), out.data_ptr<float>(), slices, taps,
                                                  ci, co, taps * ci * co, s_t, s_ci, stream));
}

}  // namespace torch_ops
}  // namespace convt3d

namespace {

// CTAs of a stock-contract kernel resident per SM of the current device (KernelEntry::resident); 0: unknown.
// ncdhw: of the kernel the entry runs with ConvLaunch::ncdhw (0 where it has none).
int64_t resident_ctas(const std::string& name, bool ncdhw) {
  const convt3d::KernelEntry* e = convt3d::find_kernel(name);
  TORCH_CHECK(e != nullptr, "convt3d_cutlass: no kernel named '", name, "' in this build");
  const auto fn = ncdhw ? e->resident_ncdhw : e->resident;
  return fn != nullptr ? fn() : 0;
}

std::vector<std::string> kernels() {
  std::vector<std::string> names;
  for (const auto& e : convt3d::registry()) names.emplace_back(e.name);
  for (const auto& e : convt3d::direct_registry()) names.emplace_back(e.name);
  for (const auto& e : convt3d::direct_wgrad_registry()) names.emplace_back(e.name);
  return names;
}

}  // namespace

TORCH_LIBRARY(convt3d_cutlass, m) {
  m.def("dgrad(str kernel, Tensor dy, Tensor filter, Tensor? bias, Tensor(a!) dx, int[] pad, int split_k=1) -> ()");
  m.def("dgrad_phases(str[] kernels, Tensor dy, Tensor[] filters, Tensor? bias, Tensor(a!) y, int[] phases, "
        "int stride, int[] split_k=[], bool grouped=True) -> ()");
  m.def("fprop(str kernel, Tensor x, Tensor filter, Tensor? bias, Tensor(a!) y, int[] pad, int[] stride, "
        "int split_k=1, bool ncdhw=False) -> ()");
  m.def("wgrad(str kernel, Tensor dy, Tensor x, Tensor(a!) partials, int[] pad, int[] stride, bool ncdhw=False) -> ()");
  m.def("direct(str kernel, Tensor input, Tensor weight, Tensor? bias, Tensor(a!) out, int[] phases, "
        "int s_in, int s_out, bool out_ncdhw=False, bool in_ncdhw=False, Tensor(b!)? in_sums=None, "
        "bool sum_phases=False, bool out_sectors=False, Tensor(c!)? in_copy=None) -> ()");
  m.def("direct_wgrad(str kernel, Tensor x, Tensor grad_y, Tensor(a!) partials, int k, int stride, int padding, "
        "int taps_per_group, bool x_ncdhw=False, bool gy_ncdhw=False) -> ()");
  m.def("transpose_layout(Tensor src, Tensor(a!) dst, bool to_channels_last, Tensor(b!)? sums=None) -> ()");
  m.def("transpose_tiles(int positions) -> int", &convt3d::torch_ops::transpose_tiles);
  m.def("channel_sums(Tensor src, Tensor(a!) out) -> ()");
  m.def("wgrad_finish(Tensor partials, Tensor(a!) out) -> ()");
  m.def("kernels() -> str[]", &kernels);
  m.def("resident_ctas(str kernel, bool ncdhw=False) -> int", &resident_ctas);
}

TORCH_LIBRARY_IMPL(convt3d_cutlass, CUDA, m) {
  m.impl("dgrad", &convt3d::torch_ops::dgrad);
  m.impl("dgrad_phases", &convt3d::torch_ops::dgrad_phases);
  m.impl("fprop", &convt3d::torch_ops::fprop);
  m.impl("wgrad", &convt3d::torch_ops::wgrad);
  m.impl("direct", &convt3d::torch_ops::direct);
  m.impl("direct_wgrad", &convt3d::torch_ops::direct_wgrad);
  m.impl("transpose_layout", &convt3d::torch_ops::transpose_layout);
  m.impl("channel_sums", &convt3d::torch_ops::channel_sums);
  m.impl("wgrad_finish", &convt3d::torch_ops::wgrad_finish);
}
