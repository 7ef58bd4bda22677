// Hopper form of the tap-reuse kernel (same contract as direct_conv.cuh, see direct_launch.h), for
// unit input stride: the ConvTranspose3d forward at any stride (one phase per output residue) and
// grad_input at stride 1.
//
// Why a second kernel: the mma.sync form is bound by instruction issue (14 warp instructions per
// m16n8k8, docs/performance.md). Here the tensor cores read both operands from shared memory
// (SS-wgmma) and one thread stages them with TMA, so the MMA warps issue almost nothing else.
//
// The kw fold: a halo row of HALO_W = 16 input positions along w makes the A operand of one
// (kd, kh) tap for 4 output rows a dense, K-major 64 x 8 tile of the halo, read by descriptor offset
// (no gather); B is the tap's [kw][co] block, so GEMM N = KX * BN and the accumulator holds, per
// halo position u, the partial sums of every kw. The epilogue adds them shifted:
//   out[w][co] = sum_kx P[w + kx][kx * BN + co],  w < TW = 16 - KX + 1.
// Staging: per chunk of 8 channels (one k8 step, a 32-byte row), one TMA box of the halo
// (OOB zero fill gives the padding and channel tails) and one box per (kd, kh) of the filter, 32-byte
// swizzled as wgmma's SW32 K-major layout expects, on an mbarrier per stage. The halo is rounded to
// tf32 (cvt.rna) in place before the MMAs read it; the host pre-rounds the weight.
//
// Built from CuTe/CUTLASS parts: SM90_TMA_LOAD_{3,5}D, the SM90 GMMA TF32 SS atoms,
// GmmaDescriptor and ClusterTransactionBarrier. sm_90a only (the TU is compiled for nothing else).
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cute/arch/copy_sm90_desc.hpp"
#include "cute/arch/copy_sm90_tma.hpp"
#include "cute/arch/mma_sm90_desc.hpp"
#include "cute/arch/mma_sm90_gmma.hpp"
#include "cute/arch/mma_sm90_gmma_ext.hpp"
#include "cutlass/arch/barrier.h"
#include "direct_atoms.cuh"
#include "direct_launch.h"
#include "sm90_atoms.cuh"

namespace convt3d {
namespace direct90 {

constexpr int KC = 8;       // reduction channels per stage: one k8 wgmma step, 32 bytes
constexpr int HALO_W = 16;  // halo positions per row: 4 rows make one 64-row A tile
constexpr int ROW_BYTES = KC * 4;

template <int N>
struct Gmma;
#define CONVT3D_GMMA_N(N)                                                   \
  template <>                                                               \
  struct Gmma<N> {                                                          \
    using Op = cute::SM90::GMMA::MMA_64x##N##x8_F32TF32TF32_SS_TN<>;        \
  };
CONVT3D_GMMA_N(24)
CONVT3D_GMMA_N(48)
CONVT3D_GMMA_N(72)
CONVT3D_GMMA_N(96)
CONVT3D_GMMA_N(144)
CONVT3D_GMMA_N(192)
#undef CONVT3D_GMMA_N

template <class Op, int NA, size_t... I>
__device__ __forceinline__ void gmma(uint64_t da, uint64_t db, float (&d)[NA], std::index_sequence<I...>) {
  Op::fma(da, db, d[I]...);
}

// Per-launch sizes the host derives from the phase table.
struct Geometry {
  int tiles_h, tiles_w;
  int HD, HH;          // halo box depth and height (the largest phase's)
  int halo_bytes;      // HD * HH * HALO_W rows of 32 bytes
  int stage_bytes;     // halo + every (kd, kh) filter block, rounded to 1 KiB
  int stages;          // min(S, channel chunks)
};

template <int TD, int TH, int KX, int BN, int WG, int S>
struct Config {
  static constexpr int TW = HALO_W - KX + 1;  // outputs per row
  static constexpr int N = KX * BN;
  static constexpr int MBLOCKS = TD * TH / 4;  // 64-row A tiles (4 output rows each)
  static constexpr int MB = MBLOCKS / WG;      // per warpgroup
  static constexpr int THREADS = 128 * WG;
  static constexpr int GROUP_BYTES = N * ROW_BYTES;  // one (kd, kh) filter block
  static constexpr int SCRATCH_STRIDE = N + 4;       // floats per epilogue row
  static_assert(TH % 4 == 0 && MBLOCKS % WG == 0 && MB >= 1, "tile shape");
  static_assert(BN % 8 == 0 && N <= 256 && KX >= 1 && KX <= HALO_W, "N tile");
  static_assert(S >= 2, "stages");
};

template <int TD, int TH, int KX, int BN, int WG, int S>
__global__ void __launch_bounds__(128 * WG, 1)
    wgmma_kernel(const __grid_constant__ DirectLaunch p, const __grid_constant__ CUtensorMap tmap_in,
                 const __grid_constant__ CUtensorMap tmap_w, const Geometry geo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Config<TD, TH, KX, BN, WG, S>;
  using Op = typename Gmma<C::N>::Op;
  constexpr int NA = C::N / 2;  // accumulator floats per thread per A tile
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const int stage_area = geo.stages * geo.stage_bytes;
  const int scratch_area = C::THREADS / 32 * 16 * C::SCRATCH_STRIDE * 4;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + (stage_area > scratch_area ? stage_area : scratch_area));

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = tid >> 7, wl = warp & 3;
  const direct::TileOrigin o = direct::tile_origin(p, geo.tiles_h, geo.tiles_w, TD, TH, C::TW);
  const int n = o.n, q0d = o.q0d, q0h = o.q0h, q0w = o.q0w;
  const DirectPhase& ph = p.phase[o.phase];
  if (q0d >= ph.count[0] || q0h >= ph.count[1] || q0w >= ph.count[2]) return;
  const int co0 = blockIdx.y * BN;
  const int tz = ph.taps[0], ty = ph.taps[1], tx = ph.taps[2];
  const int ntzy = tz * ty;
  const int nchunks = ntzy * tx > 0 ? (p.Cr + KC - 1) / KC : 0;
  const int iz0 = q0d + ph.dmin[0], iy0 = q0h + ph.dmin[1], ix0 = q0w + ph.dmin[2];
  const int tap0 = ntzy * tx > 0 ? (int)(ph.w_offset / ((long long)p.Co * p.Cr)) : 0;
  const uint32_t tx_bytes = geo.halo_bytes + ntzy * C::GROUP_BYTES;
  // Stages in use: the host sized shared memory for geo.stages = min(S, chunks), so layers with few
  // channels keep more CTAs per SM. With three or more, one wgmma batch stays in flight per chunk.
  const int ns = geo.stages;
  const int wait = ns >= 3 ? 1 : 0;

  if (tid == 0) {
    for (int s = 0; s < geo.stages; ++s) cutlass::arch::ClusterTransactionBarrier::init(&full[s], 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  // One thread stages a chunk: the halo box and one filter box per (kd, kh). Out-of-range
  // positions, channels >= Cr and output channels >= Co come back as zeros. A phase with fewer than
  // KX taps along w reads its neighbours' taps into the unused kx columns, which the epilogue skips.
  auto issue = [&](int chunk) {
    const int s = chunk % ns;
    uint8_t* st = smem + s * geo.stage_bytes;
    cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&full[s], tx_bytes);
    constexpr uint64_t hint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
    cute::SM90_TMA_LOAD_5D::copy(&tmap_in, &full[s], hint, st, chunk * KC, ix0, iy0, iz0, n);
    for (int gi = 0; gi < ntzy; ++gi)
      cute::SM90_TMA_LOAD_3D::copy(&tmap_w, &full[s], hint, st + geo.halo_bytes + gi * C::GROUP_BYTES,
                                   chunk * KC, co0, tap0 + gi * tx);
  };

  float acc[C::MB][NA];
#pragma unroll
  for (int mb = 0; mb < C::MB; ++mb)
#pragma unroll
    for (int i = 0; i < NA; ++i) acc[mb][i] = 0.f;

  // A phase without taps (k < stride) loads nothing: a TMA still in flight when the CTA exits would
  // land in the shared memory of the next CTA on this SM.
  if (tid == 0)
    for (int c = 0; c < ns && c < nchunks; ++c) issue(c);

  const uint32_t smem_addr = cute::cast_smem_ptr_to_uint(smem);
  for (int c = 0; c < nchunks; ++c) {
    const int s = c % ns;
    cutlass::arch::ClusterTransactionBarrier::wait(&full[s], (c / ns) & 1);
    float4* halo = reinterpret_cast<float4*>(smem + s * geo.stage_bytes);
    for (int i = tid; i < geo.halo_bytes / 16; i += C::THREADS) {
      float4 v = halo[i];
      v.x = __uint_as_float(direct::to_tf32(v.x));
      v.y = __uint_as_float(direct::to_tf32(v.y));
      v.z = __uint_as_float(direct::to_tf32(v.z));
      v.w = __uint_as_float(direct::to_tf32(v.w));
      halo[i] = v;
    }
    // The rounded halo is read by the async proxy (wgmma) and later overwritten by TMA.
    cutlass::arch::fence_view_async_shared();
    __syncthreads();
    // Every warpgroup has waited for the MMAs of chunk c - 1 - wait: its stage can be refilled.
    if (tid == 0) {
      const int done = c - 1 - wait;
      if (done >= 0 && done + ns < nchunks) issue(done + ns);
    }

    const uint32_t st = smem_addr + s * geo.stage_bytes;
#pragma unroll
    for (int mb = 0; mb < C::MB; ++mb)
#pragma unroll
      for (int i = 0; i < NA; ++i) cute::warpgroup_fence_operand(acc[mb][i]);
    cute::warpgroup_arrive();
    // Not unrolled: a remainder path would make ptxas move accumulators between wgmmas.
#pragma unroll 1
    for (int kd = 0; kd < tz; ++kd)
#pragma unroll 1
      for (int kh = 0; kh < ty; ++kh) {
        const uint64_t db = sw32_desc(st + geo.halo_bytes + (kd * ty + kh) * C::GROUP_BYTES);
#pragma unroll
        for (int mb = 0; mb < C::MB; ++mb) {
          const int m = wg * C::MB + mb;
          const int dd = m / (TH / 4), hb = (m % (TH / 4)) * 4;
          const int row = ((dd + kd) * geo.HH + hb + kh) * HALO_W;
          gmma<Op>(sw32_desc(st + row * ROW_BYTES), db, acc[mb], std::make_index_sequence<NA>{});
        }
      }
    cute::warpgroup_commit_batch();
    if (wait)
      cute::warpgroup_wait<1>();
    else
      cute::warpgroup_wait<0>();
#pragma unroll
    for (int mb = 0; mb < C::MB; ++mb)
#pragma unroll
      for (int i = 0; i < NA; ++i) cute::warpgroup_fence_operand(acc[mb][i]);
  }
  cute::warpgroup_wait<0>();
#pragma unroll
  for (int mb = 0; mb < C::MB; ++mb)
#pragma unroll
    for (int i = 0; i < NA; ++i) cute::warpgroup_fence_operand(acc[mb][i]);
  __syncthreads();  // the stages become the epilogue's scratch

  // Epilogue: each warp holds 16 halo positions (one output row) x N; through shared memory, lanes
  // add the kx-shifted partial sums and write whole 16-byte channel groups.
  float* scratch = reinterpret_cast<float*>(smem) + warp * 16 * C::SCRATCH_STRIDE;
  const int g = lane >> 2, tq = lane & 3;
  constexpr int C4 = BN / 4;
#pragma unroll
  for (int mb = 0; mb < C::MB; ++mb) {
    const int m = wg * C::MB + mb;
    const int qd = q0d + m / (TH / 4), qh = q0h + (m % (TH / 4)) * 4 + wl;
#pragma unroll
    for (int j = 0; j < C::N / 8; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r)
        *reinterpret_cast<float2*>(scratch + (g + 8 * r) * C::SCRATCH_STRIDE + 8 * j + 2 * tq) =
            make_float2(acc[mb][4 * j + 2 * r], acc[mb][4 * j + 2 * r + 1]);
    __syncwarp();
    if (qd < ph.count[0] && qh < ph.count[1]) {
      const int od = ph.first[0] + p.s_out * qd, oh = ph.first[1] + p.s_out * qh;
      float* row_out = p.out + (((int64_t)n * p.Do + od) * p.Ho + oh) * p.Wo * p.Co;
      for (int item = lane; item < C::TW * C4; item += 32) {
        const int w = item / C4, c4 = item % C4;
        const int qw = q0w + w, co = co0 + 4 * c4;
        if (qw >= ph.count[2] || co >= p.Co) continue;
        float4 v = p.bias != nullptr ? *reinterpret_cast<const float4*>(p.bias + co) : make_float4(0.f, 0.f, 0.f, 0.f);
        for (int kx = 0; kx < tx; ++kx) {
          const float4 a = *reinterpret_cast<const float4*>(scratch + (w + kx) * C::SCRATCH_STRIDE + kx * BN + 4 * c4);
          v.x += a.x;
          v.y += a.y;
          v.z += a.z;
          v.w += a.w;
        }
        const int ow = ph.first[2] + p.s_out * qw;
        *reinterpret_cast<float4*>(row_out + (int64_t)ow * p.Co + co) = v;
      }
    }
    __syncwarp();
  }
#endif
}

template <int TD, int TH, int KX, int BN, int WG, int S>
struct WgmmaKernel {
  using C = Config<TD, TH, KX, BN, WG, S>;

  // 0 or a cutlass::Status value; fills geo's box and stage sizes.
  static int geometry(const DirectLaunch& p, Geometry& geo) {
    int tz = 0, ty = 0, ch = 0, cw = 0;
    for (int i = 0; i < p.num_phases; ++i) {
      const DirectPhase& ph = p.phase[i];
      ch = ph.count[1] > ch ? ph.count[1] : ch;
      cw = ph.count[2] > cw ? ph.count[2] : cw;
      if (ph.count[0] <= 0 || ph.count[1] <= 0 || ph.count[2] <= 0) continue;
      if (ph.taps[2] > KX) return 5;
      tz = ph.taps[0] > tz ? ph.taps[0] : tz;
      ty = ph.taps[1] > ty ? ph.taps[1] : ty;
    }
    geo.tiles_h = (ch + TH - 1) / TH;
    geo.tiles_w = (cw + C::TW - 1) / C::TW;
    geo.HD = TD + (tz > 0 ? tz - 1 : 0);
    geo.HH = TH + (ty > 0 ? ty - 1 : 0);
    geo.halo_bytes = geo.HD * geo.HH * HALO_W * ROW_BYTES;
    geo.stage_bytes = (geo.halo_bytes + tz * ty * C::GROUP_BYTES + 1023) / 1024 * 1024;
    const int chunks = (p.Cr + KC - 1) / KC;
    geo.stages = chunks < S ? (chunks > 0 ? chunks : 1) : S;
    if (geo.HD > 256 || geo.HH > 256) return 5;  // TMA box limit
    return 0;
  }

  static size_t smem_bytes(const Geometry& geo) {
    const size_t stages = (size_t)geo.stages * geo.stage_bytes;
    const size_t scratch = (size_t)C::THREADS / 32 * 16 * C::SCRATCH_STRIDE * 4;
    return 1024 + (stages > scratch ? stages : scratch) + geo.stages * sizeof(uint64_t);
  }

  static int can_implement(const DirectLaunch& p) {
    if (p.Cr % 4 != 0 || p.Co % 4 != 0) return 1;  // 16-byte TMA strides and epilogue stores
    if (p.s_in != 1) return 5;                      // the halo rows must be dense along w
    if (p.num_phases < 1 || p.num_phases > kDirectMaxPhases || p.s_out < 1) return 4;
    if ((long long)p.N * p.num_phases > 65535 || (p.Co + BN - 1) / BN > 65535) return 5;
    Geometry geo;
    int code = geometry(p, geo);
    if (code != 0) return code;
    return sm90_fits(smem_bytes(geo));
  }

  static int run(const DirectLaunch& p) {
    int code = can_implement(p);
    if (code != 0) return code;
    Geometry geo;
    geometry(p, geo);
    int cd = 0;
    for (int i = 0; i < p.num_phases; ++i) cd = p.phase[i].count[0] > cd ? p.phase[i].count[0] : cd;
    if (cd == 0 || geo.tiles_h == 0 || geo.tiles_w == 0 || p.N == 0 || p.Co == 0) return 0;
    const long long tiles = (long long)((cd + TD - 1) / TD) * geo.tiles_h * geo.tiles_w;
    if (tiles > 0x7fffffffLL) return 5;

    auto encode = encode_fn();
    if (encode == nullptr) return 5;
    long long taps = 0;
    for (int i = 0; i < p.num_phases; ++i)
      taps += (long long)p.phase[i].taps[0] * p.phase[i].taps[1] * p.phase[i].taps[2];
    CUtensorMap tin, tw;
    const cuuint32_t in_box[5] = {KC, HALO_W, (cuuint32_t)geo.HH, (cuuint32_t)geo.HD, 1};
    if (!encode_ndhwc(&tin, p.in, p.N, p.Di, p.Hi, p.Wi, p.Cr, in_box, CU_TENSOR_MAP_SWIZZLE_32B,
                      CU_TENSOR_MAP_L2_PROMOTION_L2_128B))
      return 5;
    const cuuint32_t ones[3] = {1, 1, 1};
    const cuuint64_t w_dim[3] = {(cuuint64_t)p.Cr, (cuuint64_t)p.Co, (cuuint64_t)(taps > 0 ? taps : 1)};
    const cuuint64_t w_stride[2] = {(cuuint64_t)p.Cr * 4, (cuuint64_t)p.Co * p.Cr * 4};
    const cuuint32_t w_box[3] = {KC, BN, KX};
    if (encode(&tw, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, const_cast<float*>(p.weight), w_dim, w_stride, w_box, ones,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_32B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return 5;

    const size_t bytes = smem_bytes(geo);
    auto kernel = wgmma_kernel<TD, TH, KX, BN, WG, S>;
    const dim3 grid((unsigned)tiles, (unsigned)((p.Co + BN - 1) / BN), (unsigned)(p.N * p.num_phases));
    return direct::launch_with_smem(kernel, grid, C::THREADS, bytes, p.stream, p, tin, tw, geo);
  }

  static DirectEntry entry(const char* name) { return DirectEntry{name, &can_implement, &run}; }
};

}  // namespace direct90
}  // namespace convt3d
