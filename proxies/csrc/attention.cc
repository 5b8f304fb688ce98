// Causal softmax attention on CPUs, forward and backward, as XLA FFI targets (proxies/cpu_kernels.py).
//
// qkv is the fused projection's output [N, T, 3, H, D] (N: every leading axis, the proxies' and the
// batch's; T: time; H: heads) before the rotary embedding, which the kernel applies itself (tables
// cos, sin [T, D/2]); o is [N, T, H, D], ready for the output projection, and the backward writes
// the gradient of qkv in qkv's layout, so XLA needs no slices, rotations or transposes around
// attention. lse, the log-sum-exp of each query row's scaled scores, is [N, H, T]: the backward
// recomputes the probabilities from it (flash attention) instead of saving them.
//
// Each (sequence, head) pair is copied into contiguous, zero-padded buffers that stay in L1/L2
// while R query rows at a time are multiplied against all keys up to their own position (the
// causal triangle at tile granularity). Every product is written as broadcast-scalar times
// 16-wide vector FMAs (simd.h). Sums run in a fixed order, so results are deterministic.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace regmix_simd;

// One (sequence, head): rows padded to Tp (a multiple of 16) with zeros.
struct Pair {
  int T = 0, Tp = 0, D = 0;
  std::vector<float> q, k, v, kT, vT, o, dout, dq, dk, dv;  // [Tp, D]; kT and vT transposed, [D, Tp]
  void resize(int t, int d) {
    T = t, D = d, Tp = (t + 15) / 16 * 16;
    for (auto* b : {&q, &k, &v, &kT, &vT, &o, &dout, &dq, &dk, &dv}) b->assign((size_t)Tp * D, 0.0f);
  }
};

// Rotary embedding of one head's row x (D values) at a position with tables c, s (D/2 values):
// pairs (i, i + D/2) rotate, as proxies.model.apply_rope does.
template <int D>
inline void rope(float* __restrict__ out, const float* __restrict__ x, const float* __restrict__ c,
                 const float* __restrict__ s) {
  const int h = D / 2;
  for (int i = 0; i < h; ++i) {
    out[i] = x[i] * c[i] - x[i + h] * s[i];
    out[i + h] = x[i] * s[i] + x[i + h] * c[i];
  }
}

// The rotation's transpose: the gradient of the unrotated row from that of the rotated one.
template <int D>
inline void rope_back(float* __restrict__ out, const float* __restrict__ g, const float* __restrict__ c,
                      const float* __restrict__ s) {
  const int h = D / 2;
  for (int i = 0; i < h; ++i) {
    out[i] = g[i] * c[i] + g[i + h] * s[i];
    out[i + h] = g[i + h] * c[i] - g[i] * s[i];
  }
}

// Lane j of the two results of swapping the off-diagonal B x B blocks of rows a and b (lanes of b
// are numbered 16..31).
template <int B> constexpr int lo(int j) { return (j & B) ? 16 + j - B : j; }
template <int B> constexpr int hi(int j) { return (j & B) ? 16 + j : j + B; }

template <int B>
inline void swap_blocks(v16* x) {
  for (int i = 0; i < 16; ++i)
    if (!(i & B)) {
      const v16 a = x[i], b = x[i + B];
      x[i] = __builtin_shufflevector(a, b, lo<B>(0), lo<B>(1), lo<B>(2), lo<B>(3), lo<B>(4), lo<B>(5), lo<B>(6), lo<B>(7),
                                   lo<B>(8), lo<B>(9), lo<B>(10), lo<B>(11), lo<B>(12), lo<B>(13), lo<B>(14), lo<B>(15));
      x[i + B] = __builtin_shufflevector(a, b, hi<B>(0), hi<B>(1), hi<B>(2), hi<B>(3), hi<B>(4), hi<B>(5), hi<B>(6), hi<B>(7),
                                   hi<B>(8), hi<B>(9), hi<B>(10), hi<B>(11), hi<B>(12), hi<B>(13), hi<B>(14), hi<B>(15));
    }
}

// 16 rows of 16 floats transposed in registers: four rounds that swap blocks of 8, 4, 2 and 1.
inline void transpose16(v16* x) {
  swap_blocks<8>(x);
  swap_blocks<4>(x);
  swap_blocks<2>(x);
  swap_blocks<1>(x);
}

// dst [D, Tp] = src [Tp, D] transposed, in 16 x 16 blocks (Tp and D are multiples of 16).
template <int D>
inline void transpose(float* __restrict__ dst, const float* __restrict__ src, int Tp) {
  v16 x[16];
  for (int t0 = 0; t0 < Tp; t0 += 16)
    for (int d0 = 0; d0 < D; d0 += 16) {
      for (int i = 0; i < 16; ++i) x[i] = load(src + (size_t)(t0 + i) * D + d0);
      transpose16(x);
      for (int i = 0; i < 16; ++i) store(dst + (size_t)(d0 + i) * Tp + t0, x[i]);
    }
}

// Every head of sequence n of qkv [N, T, 3, H, D] into pairs[h]: q and k rotated, k and v also
// transposed. One pass over the sequence's rows, in memory order.
template <int D>
inline void gather_sequence(std::vector<Pair>& pairs, const float* qkv, const float* cos, const float* sin, size_t n,
                            int T, int H, bool with_vT) {
  const size_t row = (size_t)3 * H * D;
  const int half = D / 2;
  for (int t = 0; t < T; ++t) {
    const float* x = qkv + (n * T + t) * row;
    const float* c = cos + (size_t)t * half;
    const float* s = sin + (size_t)t * half;
    for (int h = 0; h < H; ++h) {
      Pair& p = pairs[h];
      float* k = p.k.data() + (size_t)t * D;
      float* v = p.v.data() + (size_t)t * D;
      rope<D>(p.q.data() + (size_t)t * D, x + (size_t)h * D, c, s);
      rope<D>(k, x + (size_t)(H + h) * D, c, s);
      std::memcpy(v, x + (size_t)(2 * H + h) * D, D * sizeof(float));
    }
  }
  for (Pair& p : pairs) {
    transpose<D>(p.kT.data(), p.k.data(), p.Tp);  // padding rows are zeros: so are their columns
    if (with_vT) transpose<D>(p.vT.data(), p.v.data(), p.Tp);
  }
}

// Rows of sequence n of x [N, T, H, D] into (to_pairs) or from the pairs' member `field`.
template <int D>
inline void move_sequence(std::vector<Pair>& pairs, std::vector<float> Pair::*field, float* x, size_t n, int T,
                          int H, bool to_pairs) {
  const size_t row = (size_t)H * D;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      float* a = x + (n * T + t) * row + (size_t)h * D;
      float* b = (pairs[h].*field).data() + (size_t)t * D;
      if (to_pairs) std::memcpy(b, a, D * sizeof(float));
      else std::memcpy(a, b, D * sizeof(float));
    }
}

template <int D, int R>
struct Kernel {
  static constexpr int V = D / 16;  // vectors per row

  // s[r][0:n] = scale * a[i0 + r] . bT[:, 0:n] for the R rows of a tile (n a multiple of 16); two
  // 16-key chunks at a time, so 2R independent accumulators hide the FMA latency.
  template <int C>
  static inline void product_chunks(const float* a, const float* bT, int Tp, int i0, int j, float scale, float* s) {
    v16 acc[R][C] = {};
    for (int d = 0; d < D; ++d) {
      v16 b[C];
      for (int c = 0; c < C; ++c) b[c] = load(bT + (size_t)d * Tp + j + 16 * c);
      for (int r = 0; r < R; ++r) {
        const v16 x = splat(a[(size_t)(i0 + r) * D + d]);
        for (int c = 0; c < C; ++c) acc[r][c] += x * b[c];
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) store(s + (size_t)r * Tp + j + 16 * c, acc[r][c] * splat(scale));
  }

  static void products(const float* a, const float* bT, int Tp, int i0, int n, float scale, float* s) {
    constexpr int C = R >= 8 ? 2 : 16 / R > 4 ? 4 : 16 / R;  // chunks per pass: about 16 accumulators
    int j = 0;
    for (; j + 16 * C <= n; j += 16 * C) product_chunks<C>(a, bT, Tp, i0, j, scale, s);
    for (; j < n; j += 16) product_chunks<1>(a, bT, Tp, i0, j, scale, s);
  }

  // out[i0 + r] = sum_j w[r][j] b[j] over j < n, times mult[r].
  static void weighted_rows(const float* w, const float* b, int Tp, int i0, int n, const float* mult, float* out) {
    v16 acc[R][V] = {};
    for (int j = 0; j < n; ++j) {
      v16 bj[V];
      for (int c = 0; c < V; ++c) bj[c] = load(b + (size_t)j * D + 16 * c);
      for (int r = 0; r < R; ++r) {
        const v16 x = splat(w[(size_t)r * Tp + j]);
        for (int c = 0; c < V; ++c) acc[r][c] += x * bj[c];
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) store(out + (size_t)(i0 + r) * D + 16 * c, acc[r][c] * splat(mult[r]));
  }

  // acc[j] += sum_r w[r][j] a[i0 + r] for j < n, J keys at a time (independent accumulators).
  static void accumulate_columns(const float* w, const float* a, int Tp, int i0, int n, float* acc) {
    constexpr int J = V >= 8 ? 1 : 8 / V;
    v16 ar[R][V];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) ar[r][c] = load(a + (size_t)(i0 + r) * D + 16 * c);
    int j0 = 0;
    for (; j0 + J <= n; j0 += J) {
      v16 sum[J][V] = {};
      for (int r = 0; r < R; ++r)
        for (int jj = 0; jj < J; ++jj) {
          const v16 x = splat(w[(size_t)r * Tp + j0 + jj]);
          for (int c = 0; c < V; ++c) sum[jj][c] += x * ar[r][c];
        }
      for (int jj = 0; jj < J; ++jj)
        for (int c = 0; c < V; ++c) {
          float* dst = acc + (size_t)(j0 + jj) * D + 16 * c;
          store(dst, load(dst) + sum[jj][c]);
        }
    }
    for (int j = j0; j < n; ++j) {
      v16 sum[V] = {};
      for (int r = 0; r < R; ++r) {
        const v16 x = splat(w[(size_t)r * Tp + j]);
        for (int c = 0; c < V; ++c) sum[c] += x * ar[r][c];
      }
      for (int c = 0; c < V; ++c) store(acc + (size_t)j * D + 16 * c, load(acc + (size_t)j * D + 16 * c) + sum[c]);
    }
  }

  static int tile_keys(int i0, int Tp) { return std::min(Tp, (i0 + R + 15) / 16 * 16); }

  static void forward(Pair& p, float* lse, float scale, std::vector<float>& s) {
    float* o = p.o.data();
    const int Tp = p.Tp;
    s.resize((size_t)R * Tp);
    for (int i0 = 0; i0 < p.T; i0 += R) {
      const int n = tile_keys(i0, Tp);
      products(p.q.data(), p.kT.data(), Tp, i0, n, scale, s.data());
      float inv[R];
      for (int r = 0; r < R; ++r) {
        float* sr = s.data() + (size_t)r * Tp;
        for (int j = i0 + r + 1; j < n; ++j) sr[j] = -INFINITY;  // causal mask
        v16 m = splat(-INFINITY);
        for (int j = 0; j < n; j += 16) m = vmax(m, load(sr + j));
        const float mx = hmax(m);
        v16 sum = {};
        for (int j = 0; j < n; j += 16) {
          const v16 e = vexp(load(sr + j) - splat(mx));
          store(sr + j, e);
          sum += e;
        }
        const float l = hsum(sum);
        inv[r] = 1.0f / l;
        if (i0 + r < p.T) lse[i0 + r] = mx + std::log(l);
      }
      weighted_rows(s.data(), p.v.data(), Tp, i0, n, inv, o);
    }
  }

  static void backward(Pair& p, const float* lse, float scale, std::vector<float>& s, std::vector<float>& ds) {
    const float *o = p.o.data(), *dout = p.dout.data();
    float *dq = p.dq.data(), *dk = p.dk.data(), *dv = p.dv.data();
    const int Tp = p.Tp;
    s.resize((size_t)R * Tp);
    ds.resize((size_t)R * Tp);
    std::fill(dk, dk + (size_t)Tp * D, 0.0f);
    std::fill(dv, dv + (size_t)Tp * D, 0.0f);
    float ones[R];
    std::fill(ones, ones + R, 1.0f);
    for (int i0 = 0; i0 < p.T; i0 += R) {
      const int n = tile_keys(i0, Tp);
      products(p.q.data(), p.kT.data(), Tp, i0, n, scale, s.data());
      products(dout, p.vT.data(), Tp, i0, n, 1.0f, ds.data());  // dP = dO v^T
      for (int r = 0; r < R; ++r) {
        const int i = i0 + r;
        float* sr = s.data() + (size_t)r * Tp;
        float* dr = ds.data() + (size_t)r * Tp;
        if (i >= p.T) {  // padding rows take no part
          std::fill(sr, sr + n, 0.0f);
          std::fill(dr, dr + n, 0.0f);
          continue;
        }
        v16 acc = {};
        for (int c = 0; c < V; ++c) acc += load(dout + (size_t)i * D + 16 * c) * load(o + (size_t)i * D + 16 * c);
        const v16 delta = splat(hsum(acc));
        const v16 l = splat(lse[i]);
        for (int j = 0; j < n; j += 16) {
          v16 pr = vexp(load(sr + j) - l);
          if (j + 16 > i + 1)
            for (int u = 0; u < 16; ++u)
              if (j + u > i) pr[u] = 0.0f;  // causal mask
          store(sr + j, pr);                                                  // P
          store(dr + j, pr * (load(dr + j) - delta) * splat(scale));          // dS (scaled)
        }
      }
      weighted_rows(ds.data(), p.k.data(), Tp, i0, n, ones, dq);  // dQ = dS k
      const int m = std::min(n, i0 + R);                           // keys this tile reaches
      accumulate_columns(ds.data(), p.q.data(), Tp, i0, m, dk);   // dK += dS^T q
      accumulate_columns(s.data(), dout, Tp, i0, m, dv);          // dV += P^T dO
    }
  }
};

struct Scratch {
  std::vector<Pair> pairs;  // one per head
  std::vector<float> s, ds;
  void resize(int T, int H, int D) {
    if ((int)pairs.size() != H || pairs[0].T != T || pairs[0].D != D) {
      pairs.assign(H, Pair());
      for (auto& p : pairs) p.resize(T, D);
    }
  }
};

thread_local Scratch scratch;  // one per thread: host devices may run on several

template <int D, int R>
void run_forward(const float* qkv, const float* cos, const float* sin, float* o, float* lse, size_t N, int T, int H) {
  Scratch& w = scratch;
  w.resize(T, H, D);
  const float scale = 1.0f / std::sqrt((float)D);
  for (size_t n = 0; n < N; ++n) {
    gather_sequence<D>(w.pairs, qkv, cos, sin, n, T, H, false);
    for (int h = 0; h < H; ++h) Kernel<D, R>::forward(w.pairs[h], lse + (n * H + h) * T, scale, w.s);
    move_sequence<D>(w.pairs, &Pair::o, o, n, T, H, false);
  }
}

template <int D, int R>
void run_backward(const float* qkv, const float* cos, const float* sin, const float* o, const float* lse,
                  const float* dout, float* dqkv, size_t N, int T, int H) {
  Scratch& w = scratch;
  w.resize(T, H, D);
  const float scale = 1.0f / std::sqrt((float)D);
  const size_t row = (size_t)3 * H * D;
  const int half = D / 2;
  for (size_t n = 0; n < N; ++n) {
    gather_sequence<D>(w.pairs, qkv, cos, sin, n, T, H, true);
    move_sequence<D>(w.pairs, &Pair::o, const_cast<float*>(o), n, T, H, true);
    move_sequence<D>(w.pairs, &Pair::dout, const_cast<float*>(dout), n, T, H, true);
    for (int h = 0; h < H; ++h) Kernel<D, R>::backward(w.pairs[h], lse + (n * H + h) * T, scale, w.s, w.ds);
    for (int t = 0; t < T; ++t) {  // back through the rotation, into the qkv layout
      float* x = dqkv + (n * T + t) * row;
      const float* c = cos + (size_t)t * half;
      const float* s = sin + (size_t)t * half;
      for (int h = 0; h < H; ++h) {
        const Pair& p = w.pairs[h];
        rope_back<D>(x + (size_t)h * D, p.dq.data() + (size_t)t * D, c, s);
        rope_back<D>(x + (size_t)(H + h) * D, p.dk.data() + (size_t)t * D, c, s);
        std::memcpy(x + (size_t)(2 * H + h) * D, p.dv.data() + (size_t)t * D, D * sizeof(float));
      }
    }
  }
}

struct Shape {
  size_t N = 1;
  int T = 0, H = 0, D = 0;
};

ffi::Error shape_of(const ffi::Buffer<ffi::F32>& qkv, const ffi::Buffer<ffi::F32>& cos, Shape& s) {
  const auto dims = qkv.dimensions();
  const size_t r = dims.size();
  if (r < 4 || dims[r - 3] != 3) return ffi::Error::InvalidArgument("attention: qkv must be [..., T, 3, H, D]");
  s.T = (int)dims[r - 4], s.H = (int)dims[r - 2], s.D = (int)dims[r - 1];
  s.N = 1;
  for (size_t i = 0; i + 4 < r; ++i) s.N *= (size_t)dims[i];
  if (cos.element_count() != (size_t)s.T * (s.D / 2))
    return ffi::Error::InvalidArgument("attention: rotary tables must be [T, D / 2]");
  return ffi::Error::Success();
}

#define REGMIX_DISPATCH(D_, CALL)                                         \
  switch (D_) {                                                           \
    case 16: CALL(16, 8); break;                                          \
    case 32: CALL(32, 8); break;                                          \
    case 64: CALL(64, 4); break;                                          \
    case 128: CALL(128, 2); break;                                        \
    default: return ffi::Error::InvalidArgument("attention: head size must be 16, 32, 64 or 128"); \
  }

ffi::Error Forward(ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> cos, ffi::Buffer<ffi::F32> sin,
                   ffi::ResultBuffer<ffi::F32> o, ffi::ResultBuffer<ffi::F32> lse) {
  Shape s;
  if (auto e = shape_of(qkv, cos, s); e.failure()) return e;
#define CALL(D_, R_) \
  run_forward<D_, R_>(qkv.typed_data(), cos.typed_data(), sin.typed_data(), o->typed_data(), lse->typed_data(), s.N, s.T, s.H)
  REGMIX_DISPATCH(s.D, CALL)
#undef CALL
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> cos, ffi::Buffer<ffi::F32> sin,
                    ffi::Buffer<ffi::F32> o, ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> dout,
                    ffi::ResultBuffer<ffi::F32> dqkv) {
  Shape s;
  if (auto e = shape_of(qkv, cos, s); e.failure()) return e;
#define CALL(D_, R_)                                                                                          \
  run_backward<D_, R_>(qkv.typed_data(), cos.typed_data(), sin.typed_data(), o.typed_data(), lse.typed_data(), \
                       dout.typed_data(), dqkv->typed_data(), s.N, s.T, s.H)
  REGMIX_DISPATCH(s.D, CALL)
#undef CALL
  return ffi::Error::Success();
}

}  // namespace

using B = ffi::Buffer<ffi::F32>;
// Forward (qkv, cos, sin) -> (o, lse); backward (qkv, cos, sin, o, lse, do) -> dqkv.
XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixAttentionForward, Forward,
                              ffi::Ffi::Bind().Arg<B>().Arg<B>().Arg<B>().Ret<B>().Ret<B>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixAttentionBackward, Backward,
                              ffi::Ffi::Bind().Arg<B>().Arg<B>().Arg<B>().Arg<B>().Arg<B>().Arg<B>().Ret<B>());
