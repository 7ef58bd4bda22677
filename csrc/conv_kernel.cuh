// Wraps one CUTLASS 2.x implicit-GEMM Conv3d instantiation behind the torch-free
// ConvLaunch interface. Included by the generated csrc/kernels/*.cu files only.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "conv_launch.h"
#include "launch_smem.h"
#include "cutlass/cutlass.h"
#include "cutlass/conv/conv3d_problem_size.h"
#include "cutlass/conv/device/implicit_gemm_convolution.h"
#include "cutlass/conv/kernel/default_conv3d_dgrad.h"
#include "cutlass/conv/kernel/default_conv3d_fprop.h"
#include "cutlass/conv/kernel/default_conv3d_wgrad.h"
#include "cutlass/conv/threadblock/implicit_gemm_multistage.h"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "cutlass/epilogue/threadblock/default_epilogue_simt.h"
#include "cutlass/epilogue/threadblock/default_epilogue_tensor_op.h"
#include "cutlass/epilogue/threadblock/output_iterator_parameter.h"
#include "cutlass/gemm/threadblock/threadblock_swizzle.h"

namespace cutlass {
namespace epilogue {
namespace threadblock {
// A Dgrad epilogue through PredicatedTileIteratorConv (NDHWC at any strides) takes the result's own
// strides, as CUTLASS's Fprop and Deconv specialisations of this parameter do; CUTLASS has none for Dgrad.
template <typename TensorRef_, typename ConvProblemSize_>
struct ConvOutputIteratorParameter<layout::TensorNDHWC, layout::TensorNDHWC, TensorRef_, conv::Operator::kDgrad,
                                   ConvProblemSize_> {
  using TensorLayout = layout::TensorNDHWC;
  using OutputIteratorLayout = layout::TensorNDHWC;
  using MappedLayout = layout::RowMajor;
  using OutputTensorCoord = typename OutputIteratorLayout::TensorCoord;
  using MappedTensorCoord = typename MappedLayout::TensorCoord;
  using TensorRef = TensorRef_;
  static conv::Operator const kConvolutionalOperator = conv::Operator::kDgrad;
  using ConvProblemSize = ConvProblemSize_;

  CUTLASS_HOST_DEVICE
  static OutputIteratorLayout layout(const TensorRef& ref) { return ref.stride(); }

  CUTLASS_HOST_DEVICE
  static MappedTensorCoord extent(ConvProblemSize problem_size) {
    return conv::implicit_gemm_problem_size(kConvolutionalOperator, problem_size).mn();
  }
};
}  // namespace threadblock
}  // namespace epilogue
}  // namespace cutlass

namespace convt3d {

using Layout = cutlass::layout::TensorNDHWC;

template <cutlass::conv::Operator Op, typename OpClass, typename MathOp, typename TB, typename Warp,
          typename Inst, int Stages, int EpilogueCount>
struct DefaultKernel;

// The stock SIMT main loop with its shared-memory tiles padded by 4 floats per k row. CUTLASS's Sm80 SIMT cores
// transpose both operands on their way in (4-byte cp.async, lanes 0-7 along k) into M- and N-contiguous tiles
// whose rows are 128 floats apart (their padding is kK / 32, 0 at kK = 8), so the 8 lanes of one position
// write one bank: ncu on the H200 (v0.57) counted 110M bank conflicts on those cp.async against cuDNN's 11M
// on U-Net 128->64's grad_input, the shared pipe at 86% of its peak and mio_throttle among the top stalls. A
// row of M + 4 (N + 4) floats moves each k row by 4 banks: the 32 stores of a warp land on 32 banks, and the
// warp's 16-byte fragment loads stay aligned (4 floats). Tensor-op rows are left as they are (their cores swizzle).
template <typename Mma, bool kSimt>
struct PaddedSimtMma {
  // A SIMT main loop that is not ImplicitGemmMultistage (another CUTLASS, or two stages) would keep its conflicts
  // without a word: refuse to compile instead.
  static_assert(!kSimt, "PaddedSimtMma: the SIMT main loop is not the ImplicitGemmMultistage it pads");
  using type = Mma;
};

template <typename Shape, typename IterA, typename SmemIterA, cutlass::arch::CacheOperation::Kind CacheA,
          typename IterB, typename SmemIterB, cutlass::arch::CacheOperation::Kind CacheB, typename Policy,
          int Stages, typename Enable>
struct PaddedSimtMma<cutlass::conv::threadblock::ImplicitGemmMultistage<Shape, IterA, SmemIterA, CacheA, IterB,
                                                                         SmemIterB, CacheB, Policy, Stages, Enable>,
                     true> {
  // 4 = 32 lanes / kK (CUTLASS's simt_transpose_padding) at the kK = 8 of every SIMT row in the table; another kK
  // needs its own padding, and 16-byte alignment of the fragment loads caps it below at 4.
  static_assert(Shape::kK == 8, "PaddedSimtMma: padding chosen for kK = 8");
  static constexpr int kPad = 4;
  using type = cutlass::conv::threadblock::ImplicitGemmMultistage<
      Shape, IterA, SmemIterA, CacheA, IterB, SmemIterB, CacheB,
      cutlass::gemm::threadblock::MmaPolicy<typename Policy::Operator, cutlass::MatrixShape<kPad, 0>,
                                            cutlass::MatrixShape<0, kPad>, Policy::kPartitionsK>,
      Stages, Enable>;
};

// Kernel with its main loop padded where it is SIMT (PaddedSimtMma), the epilogue and swizzle unchanged.
template <typename Kernel, typename OpClass, cutlass::conv::Operator Op>
using PaddedKernel = cutlass::conv::kernel::ImplicitGemmConvolution<
    typename PaddedSimtMma<typename Kernel::Mma, std::is_same<OpClass, cutlass::arch::OpClassSimt>::value>::type,
    typename Kernel::Epilogue, typename Kernel::ThreadblockSwizzle, Op, cutlass::conv::Conv3dProblemSize>;

#define CONVT3D_KERNEL_COMMON                                                                  \
  float, Layout, float, Layout, float, Layout, float, OpClass, cutlass::arch::Sm80, TB, Warp, \
      Inst, cutlass::epilogue::thread::LinearCombination<float, EpilogueCount, float, float>,  \
      cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, Stages, MathOp

template <typename OpClass, typename MathOp, typename TB, typename Warp, typename Inst, int Stages,
          int EpilogueCount>
struct DefaultKernel<cutlass::conv::Operator::kFprop, OpClass, MathOp, TB, Warp, Inst, Stages,
                     EpilogueCount> {
  using Kernel = PaddedKernel<typename cutlass::conv::kernel::DefaultConv3dFprop<
                                  CONVT3D_KERNEL_COMMON, cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel,
                              OpClass, cutlass::conv::Operator::kFprop>;
  using StridedKernel = Kernel;  // a strided result is Dgrad's alone (Launcher refuses it here)
  using GroupedKernel = Kernel;  // grouped phases are Dgrad's alone (no run_phases in its entry)
};

// The epilogue of a Dgrad kernel that writes through PredicatedTileIteratorConv: each output row's
// (n, d, h, w) decoded and placed by the result's strides instead of one packed row stride.
template <typename OpClass, typename TB, typename WarpMma, typename OutputOp>
struct StridedDgradEpilogue {
  using Epilogue = typename cutlass::epilogue::threadblock::DefaultEpilogueTensorOp<
      TB, WarpMma, 1, OutputOp, OutputOp::kCount, false, cutlass::layout::NoPermute,
      cutlass::conv::StrideSupport::kStrided, 5>::Epilogue;
};

template <typename TB, typename WarpMma, typename OutputOp>
struct StridedDgradEpilogue<cutlass::arch::OpClassSimt, TB, WarpMma, OutputOp> {
  using Epilogue = typename cutlass::epilogue::threadblock::DefaultEpilogueSimt<
      TB, WarpMma, OutputOp, OutputOp::kCount, false, cutlass::layout::NoPermute,
      cutlass::conv::StrideSupport::kStrided, 5>::Epilogue;
};

// The tile of the phase a CTA of grouped_phases_kernel (below) computes, set by that kernel before the
// CUTLASS kernel body runs: the body asks its swizzle for the tile, and a swizzle has no parameters of its
// own to carry it in.
struct PhaseSwizzle : cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<1> {
  CUTLASS_DEVICE static int* tile() {
    __shared__ int t[3];
    return t;
  }
  CUTLASS_DEVICE static cutlass::gemm::GemmCoord get_tile_offset(int) {
    const int* t = tile();
    return cutlass::gemm::GemmCoord{t[0], t[1], t[2]};
  }
};

template <typename OpClass, typename MathOp, typename TB, typename Warp, typename Inst, int Stages,
          int EpilogueCount>
struct DefaultKernel<cutlass::conv::Operator::kDgrad, OpClass, MathOp, TB, Warp, Inst, Stages,
                     EpilogueCount> {
  // Unit stride only: stride > 1 is decomposed into unit-stride phases in Python,
  // so no MMA is spent on taps that the strided iterator would predicate off.
  using Kernel = PaddedKernel<typename cutlass::conv::kernel::DefaultConv3dDgrad<
                                  CONVT3D_KERNEL_COMMON, cutlass::conv::IteratorAlgorithm::kOptimized,
                                  cutlass::conv::StrideSupport::kUnity>::Kernel,
                              OpClass, cutlass::conv::Operator::kDgrad>;
  // The same main loop writing a stride phase straight into its strided view of the output (the
  // forward's phases, dgrad_phases), instead of a packed temporary and a copy per phase. Its epilogue
  // indexes in 32 bits, so the packed kernel stays for results past 2^31 elements.
  using StridedKernel = cutlass::conv::kernel::ImplicitGemmConvolution<
      typename Kernel::Mma,
      typename StridedDgradEpilogue<OpClass, TB, typename Kernel::Mma::Operator,
                                    typename Kernel::EpilogueOutputOp>::Epilogue,
      typename Kernel::ThreadblockSwizzle, cutlass::conv::Operator::kDgrad, cutlass::conv::Conv3dProblemSize>;
  // StridedKernel's main loop and epilogue behind PhaseSwizzle, for grouped_phases_kernel (every stride phase
  // of a forward in one launch).
  using GroupedKernel = cutlass::conv::kernel::ImplicitGemmConvolution<
      typename Kernel::Mma, typename StridedKernel::Epilogue, PhaseSwizzle, cutlass::conv::Operator::kDgrad,
      cutlass::conv::Conv3dProblemSize>;
};

template <typename OpClass, typename MathOp, typename TB, typename Warp, typename Inst, int Stages,
          int EpilogueCount>
struct DefaultKernel<cutlass::conv::Operator::kWgrad, OpClass, MathOp, TB, Warp, Inst, Stages,
                     EpilogueCount> {
  using Kernel = typename cutlass::conv::kernel::DefaultConv3dWgrad<
      CONVT3D_KERNEL_COMMON, cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel;
  using StridedKernel = Kernel;  // a strided result is Dgrad's alone (Launcher refuses it here)
  using GroupedKernel = Kernel;  // grouped phases are Dgrad's alone (no run_phases in its entry)
};

#undef CONVT3D_KERNEL_COMMON

// kMaxGroupedPhases (conv_launch.h): each phase's CUTLASS Params is 600 bytes on the stock tiles, so 8
// phases (stride 2) take 4.8 KB of kernel parameters (above the classic 4 KB; sm_70+ with CUDA 12.1+ take up
// to 32 KB). Stride 3's 27 phases stay on the side-stream form of dgrad_phases. Built with a CUDA before 12.1
// (torch 2.0-2.3's cu118 builds), no kernel has run_phases and every phase takes the side streams
// (CONVT3D_NO_GROUPED_PHASES builds that form with any CUDA, to check that it compiles).
#if defined(CUDART_VERSION) && CUDART_VERSION >= 12010 && !defined(CONVT3D_NO_GROUPED_PHASES)
#define CONVT3D_GROUPED_PHASES 1
#else
#define CONVT3D_GROUPED_PHASES 0
#endif

template <typename K>
struct GroupedPhases {
  typename K::Params phase[kMaxGroupedPhases];
  int first_block[kMaxGroupedPhases + 1];  // phase i owns blocks first_block[i] to first_block[i + 1] - 1
  int count;
};

// Every phase of a stride-s forward in one grid: CTA b runs tile (m, n, k) of the phase whose range holds b,
// m fastest, then n, then the serial split-K slice k, so the slices of a tile that wait on each other's
// semaphore come in slice order and after every CTA they wait for (CUTLASS's own serial split-K relies on
// the same block order). Why: launched one by one (dgrad_phases' side streams) the phases cost a launch,
// a fork and a join each on the host, 0.2-0.35 ms per forward of the small fp32 layers for about 0.4 ms
// of kernels (H100, v0.42).
template <typename K>
__global__ void grouped_phases_kernel(const __grid_constant__ GroupedPhases<K> g) {
  extern __shared__ int smem_[];
  const int b = blockIdx.x;
  int i = 0;
  while (i + 1 < g.count && b >= g.first_block[i + 1]) ++i;
  const typename K::Params& p = g.phase[i];
  if (threadIdx.x == 0) {
    const int local = b - g.first_block[i], tm = p.grid_tiled_shape.m(), tn = p.grid_tiled_shape.n();
    int* t = PhaseSwizzle::tile();
    t[0] = local % tm;
    t[1] = (local / tm) % tn;
    t[2] = local / (tm * tn);
  }
  __syncthreads();
  K op;
  op(p, *reinterpret_cast<typename K::SharedStorage*>(smem_));
}

// Kernels: a DefaultKernel (its Kernel, and for Dgrad its StridedKernel and GroupedKernel).
template <typename Kernels>
struct Launcher {
  using KernelT = typename Kernels::Kernel;
  using Op = cutlass::conv::device::ImplicitGemmConvolution<KernelT>;
  static constexpr cutlass::conv::Operator kOp = KernelT::kConvolutionalOperator;

  // Wgrad's slices are partial sums summed by the caller in a fixed order; Fprop's and Dgrad's are
  // serial: each output tile's slices add into the result one after another, in slice order, behind a
  // semaphore, so the result stays deterministic and needs no buffer of its own.
  static bool parallel(const ConvLaunch& a) {
    return a.split_k_slices > 1 && kOp == cutlass::conv::Operator::kWgrad;
  }

  static bool strided(const ConvLaunch& a) {
    return a.result_stride[0] != 0 || a.result_stride[1] != 0 || a.result_stride[2] != 0 || a.result_stride[3] != 0;
  }

  // A strided result must lie within 2^31 elements of its start (the strided epilogue's 32-bit offsets).
  static bool strided_fits(const ConvLaunch& a) {
    const long long* st = a.result_stride;
    long long span = a.C;
    const long long ext[4] = {a.W, a.H, a.D, a.N};
    for (int i = 0; i < 4; ++i) {
      if (st[i] <= 0 || st[i] >= (1LL << 31)) return false;
      span += (ext[i] - 1) * st[i];
    }
    return span < (1LL << 31);
  }

  static cutlass::conv::Conv3dProblemSize problem(const ConvLaunch& a) {
    return cutlass::conv::Conv3dProblemSize(
        a.N, a.D, a.H, a.W, a.C, a.K, a.T, a.R, a.S, a.Z, a.P, a.Q, a.pad_d, a.pad_h, a.pad_w,
        a.stride_d, a.stride_h, a.stride_w, 1, 1, 1, cutlass::conv::Mode::kCrossCorrelation,
        a.split_k_slices);
  }

  template <typename OpT>
  static typename OpT::Arguments arguments(const ConvLaunch& a) {
    auto ps = problem(a);
    auto act = Layout::packed({a.N, a.D, a.H, a.W, a.C});
    auto flt = Layout::packed({a.K, a.T, a.R, a.S, a.C});
    auto out = Layout::packed({a.N, a.Z, a.P, a.Q, a.K});
    float* act_p = const_cast<float*>(a.activation);
    float* flt_p = const_cast<float*>(a.filter);
    float* out_p = const_cast<float*>(a.output);
    // A zero row stride makes the epilogue's source operand a per-channel broadcast.
    Layout bias_layout{Layout::Stride()};
    const bool has_bias = a.bias != nullptr;
    using Ref = cutlass::TensorRef<float, Layout>;
    float* bias_p = const_cast<float*>(a.bias);
    typename KernelT::EpilogueOutputOp::Params epi(1.0f, has_bias ? 1.0f : 0.0f);
    auto mode = parallel(a) ? cutlass::conv::SplitKMode::kParallel : cutlass::conv::SplitKMode::kSerial;
    if constexpr (kOp == cutlass::conv::Operator::kFprop) {
      return {ps, {act_p, act}, {flt_p, flt},
              has_bias ? Ref(bias_p, bias_layout) : Ref(a.result, out),
              {a.result, out}, epi, mode};
    } else if constexpr (kOp == cutlass::conv::Operator::kDgrad) {
      // TensorNDHWC's strides: per w, h, d and n step.
      Layout res = act;
      if (strided(a)) {
        Layout::Stride st;
        for (int i = 0; i < 4; ++i) st[i] = int(a.result_stride[i]);
        res = Layout(st);
      }
      return {ps, {out_p, out}, {flt_p, flt},
              has_bias ? Ref(bias_p, bias_layout) : Ref(a.result, res),
              {a.result, res}, epi, mode};
    } else {
      return {ps, {out_p, out}, {act_p, act}, {a.result, flt}, {a.result, flt}, epi, mode};
    }
  }

  template <typename OpT>
  static int can_implement_with(const ConvLaunch& a) {
    return int(OpT::can_implement(arguments<OpT>(a)));
  }

  template <typename OpT>
  static std::size_t workspace_with(const ConvLaunch& a) {
    // Parallel split-K writes its partial sums straight into `result` (sized by the caller); serial
    // split-K needs one semaphore per output tile, which CUTLASS zeroes in initialize().
    if (parallel(a)) return 0;
    return OpT::get_workspace_size(arguments<OpT>(a));
  }

  // Launched without OpT::initialize(), whose cudaMemsetAsync zeroes the whole workspace first: parallel
  // split-K (the partial-sum buffer: 8.6 MB and a host call on U-Net k2 up's tf32 step, although every
  // slice's CTAs write their whole tiles, the epilogue reading no source at beta = 0), and serial split-K
  // whose semaphores the caller zeroed already (`workspace_zeroed`; a kernel's last slice leaves them 0).
  template <typename OpT>
  static int run_prepared(const typename OpT::Arguments& args, int* semaphores, cudaStream_t stream) {
    using K = typename OpT::UnderlyingKernel;
    const typename K::Params params(args, semaphores);
    const dim3 grid = typename OpT::ThreadblockSwizzle().get_grid_shape(params.grid_tiled_shape);
    return direct::launch_with_smem(cutlass::Kernel<K>, grid, dim3(32 * OpT::kWarpCount, 1, 1),
                                    sizeof(typename K::SharedStorage), stream, params);
  }

  template <typename OpT>
  static int run_with(const ConvLaunch& a) {
    auto args = arguments<OpT>(a);
    cutlass::Status st = OpT::can_implement(args);
    if (st != cutlass::Status::kSuccess) return int(st);
    if (parallel(a)) return run_prepared<OpT>(args, nullptr, a.stream);
    if (a.workspace_zeroed && a.split_k_slices > 1) {
      if (a.workspace == nullptr || a.workspace_bytes < OpT::get_workspace_size(args))
        return int(cutlass::Status::kErrorWorkspaceNull);
      return run_prepared<OpT>(args, static_cast<int*>(a.workspace), a.stream);
    }
    void* ws = a.workspace;
    OpT op;
    st = op.initialize(args, ws, a.stream);
    if (st != cutlass::Status::kSuccess) return int(st);
    st = op(a.stream);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return 1000 + int(err);
    return int(st);
  }

  // What CUTLASS's own can_implement does not check: a wgrad bias, a strided result outside Dgrad or past
  // the strided epilogue's 32-bit offsets.
  static int precheck(const ConvLaunch& a) {
    const bool dgrad = kOp == cutlass::conv::Operator::kDgrad;
    if ((a.bias != nullptr && kOp == cutlass::conv::Operator::kWgrad) || (strided(a) && !(dgrad && strided_fits(a))))
      return int(cutlass::Status::kErrorNotSupported);
    return 0;
  }

  static int can_implement(const ConvLaunch& a) {
    if (const int code = precheck(a)) return code;
    return strided(a) ? can_implement_with<StridedOp>(a) : can_implement_with<Op>(a);
  }

  static std::size_t workspace_size(const ConvLaunch& a) {
    return strided(a) ? workspace_with<StridedOp>(a) : workspace_with<Op>(a);
  }

  // The unstrided kernel's CTAs per SM with the threads and shared memory CUTLASS's run launches it with.
  static int resident() {
    using K = typename Op::UnderlyingKernel;
    return direct::resident_ctas(cutlass::Kernel<K>, 32 * Op::kWarpCount, sizeof(typename K::SharedStorage));
  }

  // run_with checks CUTLASS's conditions itself, so only precheck's are added here.
  static int run(const ConvLaunch& a) {
    if (const int code = precheck(a)) return code;
    return strided(a) ? run_with<StridedOp>(a) : run_with<Op>(a);
  }

  using GroupedOp = cutlass::conv::device::ImplicitGemmConvolution<typename Kernels::GroupedKernel>;

  // Phases 0..n-1 of one forward (Dgrad, each result a strided view of the same output, their serial
  // split-K semaphores zeroed by the caller: workspace_zeroed) in one launch on phases[0].stream, the
  // phases with the longest main loops first so that the short ones fill the last wave.
  static int run_phases(const ConvLaunch* phases, int n) {
    if constexpr (kOp != cutlass::conv::Operator::kDgrad) {
      return int(cutlass::Status::kErrorNotSupported);
    } else {
      using K = typename Kernels::GroupedKernel;
      if (n < 1 || n > kMaxGroupedPhases) return int(cutlass::Status::kErrorNotSupported);
      typename K::Params params[kMaxGroupedPhases];
      int order[kMaxGroupedPhases];
      for (int i = 0; i < n; ++i) {
        const ConvLaunch& a = phases[i];
        if (a.stream != phases[0].stream) return int(cutlass::Status::kErrorInvalidProblem);
        if (const int code = precheck(a)) return code;
        const auto args = arguments<GroupedOp>(a);
        const cutlass::Status st = GroupedOp::can_implement(args);
        if (st != cutlass::Status::kSuccess) return int(st);
        int* semaphores = nullptr;
        if (a.split_k_slices > 1) {
          if (!a.workspace_zeroed || a.workspace == nullptr || a.workspace_bytes < GroupedOp::get_workspace_size(args))
            return int(cutlass::Status::kErrorWorkspaceNull);
          semaphores = static_cast<int*>(a.workspace);
        }
        params[i] = typename K::Params(args, semaphores);
        order[i] = i;
      }
      std::stable_sort(order, order + n,
                       [&](int x, int y) { return params[x].gemm_k_iterations > params[y].gemm_k_iterations; });
      GroupedPhases<K> g;
      g.count = n;
      long long blocks = 0;
      for (int j = 0; j < n; ++j) {
        const auto& t = params[order[j]].grid_tiled_shape;
        g.phase[j] = params[order[j]];
        g.first_block[j] = int(blocks);
        blocks += (long long)t.m() * t.n() * t.k();
        if (blocks > 0x7fffffffLL) return int(cutlass::Status::kErrorInvalidProblem);
      }
      g.first_block[n] = int(blocks);
      if (blocks == 0) return 0;
      return direct::launch_with_smem(grouped_phases_kernel<K>, dim3(unsigned(blocks)), dim3(K::kThreadCount),
                                      sizeof(typename K::SharedStorage), phases[0].stream, g);
    }
  }

  // run_phases where grouped launches are built (Dgrad, CONVT3D_GROUPED_PHASES); the discarded branch keeps
  // the grouped kernel out of the other builds.
  static PhasesFn phases_fn() {
    if constexpr (kOp == cutlass::conv::Operator::kDgrad && CONVT3D_GROUPED_PHASES) {
      return &run_phases;
    } else {
      return nullptr;
    }
  }

  static KernelEntry entry(const char* name) {
    return KernelEntry{name, &can_implement, &workspace_size, &run, phases_fn(), &resident};
  }

  // Dgrad: the same main loop with the strided epilogue (DefaultKernel::StridedKernel); else Op itself.
  using StridedOp = cutlass::conv::device::ImplicitGemmConvolution<typename Kernels::StridedKernel>;
};

}  // namespace convt3d
