// Wraps one CUTLASS 2.x implicit-GEMM Conv3d instantiation behind the torch-free
// ConvLaunch interface. Included by the generated csrc/kernels/*.cu files only.
#pragma once
#include <cuda_runtime.h>

#include "conv_launch.h"
#include "cutlass/cutlass.h"
#include "cutlass/conv/conv3d_problem_size.h"
#include "cutlass/conv/device/implicit_gemm_convolution.h"
#include "cutlass/conv/kernel/default_conv3d_dgrad.h"
#include "cutlass/conv/kernel/default_conv3d_fprop.h"
#include "cutlass/conv/kernel/default_conv3d_wgrad.h"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "cutlass/gemm/threadblock/threadblock_swizzle.h"

namespace convt3d {

using Layout = cutlass::layout::TensorNDHWC;

template <cutlass::conv::Operator Op, typename OpClass, typename MathOp, typename TB, typename Warp,
          typename Inst, int Stages, int EpilogueCount>
struct DefaultKernel;

#define CONVT3D_KERNEL_COMMON                                                                  \
  float, Layout, float, Layout, float, Layout, float, OpClass, cutlass::arch::Sm80, TB, Warp, \
      Inst, cutlass::epilogue::thread::LinearCombination<float, EpilogueCount, float, float>,  \
      cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, Stages, MathOp

template <typename OpClass, typename MathOp, typename TB, typename Warp, typename Inst, int Stages,
          int EpilogueCount>
struct DefaultKernel<cutlass::conv::Operator::kFprop, OpClass, MathOp, TB, Warp, Inst, Stages,
                     EpilogueCount> {
  using Kernel = typename cutlass::conv::kernel::DefaultConv3dFprop<
      CONVT3D_KERNEL_COMMON, cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel;
};

template <typename OpClass, typename MathOp, typename TB, typename Warp, typename Inst, int Stages,
          int EpilogueCount>
struct DefaultKernel<cutlass::conv::Operator::kDgrad, OpClass, MathOp, TB, Warp, Inst, Stages,
                     EpilogueCount> {
  // Unit stride only: stride > 1 is decomposed into unit-stride phases in Python,
  // so no MMA is spent on taps that the strided iterator would predicate off.
  using Kernel = typename cutlass::conv::kernel::DefaultConv3dDgrad<
      CONVT3D_KERNEL_COMMON, cutlass::conv::IteratorAlgorithm::kOptimized,
      cutlass::conv::StrideSupport::kUnity>::Kernel;
};

template <typename OpClass, typename MathOp, typename TB, typename Warp, typename Inst, int Stages,
          int EpilogueCount>
struct DefaultKernel<cutlass::conv::Operator::kWgrad, OpClass, MathOp, TB, Warp, Inst, Stages,
                     EpilogueCount> {
  using Kernel = typename cutlass::conv::kernel::DefaultConv3dWgrad<
      CONVT3D_KERNEL_COMMON, cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel;
};

#undef CONVT3D_KERNEL_COMMON

template <typename KernelT>
struct Launcher {
  using Op = cutlass::conv::device::ImplicitGemmConvolution<KernelT>;
  static constexpr cutlass::conv::Operator kOp = KernelT::kConvolutionalOperator;

  // Wgrad's slices are partial sums summed by the caller in a fixed order; Fprop's and Dgrad's are
  // serial: each output tile's slices add into the result one after another, in slice order, behind a
  // semaphore, so the result stays deterministic and needs no buffer of its own.
  static bool parallel(const ConvLaunch& a) {
    return a.split_k_slices > 1 && kOp == cutlass::conv::Operator::kWgrad;
  }

  static cutlass::conv::Conv3dProblemSize problem(const ConvLaunch& a) {
    return cutlass::conv::Conv3dProblemSize(
        a.N, a.D, a.H, a.W, a.C, a.K, a.T, a.R, a.S, a.Z, a.P, a.Q, a.pad_d, a.pad_h, a.pad_w,
        a.stride_d, a.stride_h, a.stride_w, 1, 1, 1, cutlass::conv::Mode::kCrossCorrelation,
        a.split_k_slices);
  }

  static typename Op::Arguments arguments(const ConvLaunch& a) {
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
      return {ps, {out_p, out}, {flt_p, flt},
              has_bias ? Ref(bias_p, bias_layout) : Ref(a.result, act),
              {a.result, act}, epi, mode};
    } else {
      return {ps, {out_p, out}, {act_p, act}, {a.result, flt}, {a.result, flt}, epi, mode};
    }
  }

  static int can_implement(const ConvLaunch& a) {
    if (a.bias != nullptr && kOp == cutlass::conv::Operator::kWgrad)
      return int(cutlass::Status::kErrorNotSupported);
    return int(Op::can_implement(arguments(a)));
  }

  static std::size_t workspace_size(const ConvLaunch& a) {
    // Parallel split-K writes its partial sums straight into `result` (sized by the caller); serial
    // split-K needs one semaphore per output tile, which CUTLASS zeroes in initialize().
    if (parallel(a)) return 0;
    return Op::get_workspace_size(arguments(a));
  }

  static int run(const ConvLaunch& a) {
    auto args = arguments(a);
    cutlass::Status st = Op::can_implement(args);
    if (st != cutlass::Status::kSuccess) return int(st);
    void* ws = parallel(a) ? static_cast<void*>(a.result) : a.workspace;
    Op op;
    st = op.initialize(args, ws, a.stream);
    if (st != cutlass::Status::kSuccess) return int(st);
    st = op(a.stream);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return 1000 + int(err);
    return int(st);
  }

  static KernelEntry entry(const char* name) {
    return KernelEntry{name, &can_implement, &workspace_size, &run};
  }
};

}  // namespace convt3d
