// Causal softmax attention on CPUs, forward and backward, as XLA FFI targets (proxies/cpu_attention.py).
//
// q, k, v, o and their gradients are [N, T, H, D] (N: every leading axis, the proxies' and the
// batch's; T: time; H: heads), the layout of a fused qkv projection, so XLA needs no transposes
// around attention. lse, the log-sum-exp of each query row's scaled scores, is [N, H, T]: the
// backward recomputes the probabilities from it (flash attention) instead of saving them.
//
// Each (sequence, head) pair is copied into contiguous, zero-padded buffers that stay in L1/L2
// while R query rows at a time are multiplied against all keys up to their own position (the
// causal triangle at tile granularity). Every product is written as broadcast-scalar times
// 16-wide vector FMAs (GCC vector extensions: AVX-512 where the CPU has it, narrower vectors
// otherwise). Sums run in a fixed order, so results are deterministic.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float v16 __attribute__((vector_size(64), aligned(64)));
typedef int32_t i16v __attribute__((vector_size(64), aligned(64)));

inline v16 splat(float x) { return (v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
inline v16 load(const float* p) { v16 r; std::memcpy(&r, p, sizeof r); return r; }
inline void store(float* p, v16 x) { std::memcpy(p, &x, sizeof x); }
inline v16 vmax(v16 a, v16 b) { return a > b ? a : b; }
inline float hmax(v16 x) { float m = x[0]; for (int i = 1; i < 16; ++i) m = std::max(m, x[i]); return m; }
inline float hsum(v16 x) { float s = 0; for (int i = 0; i < 16; ++i) s += x[i]; return s; }

// exp of every lane: 2^n p(r) with x = n ln2 + r, |r| <= ln2/2 (Cephes' polynomial, about 1 ulp).
// Lanes below -87 (masked scores are -inf) give exactly 0.
inline v16 vexp(v16 x) {
  const v16 lo = splat(-87.0f);
  const auto zero = x < lo;
  x = vmax(x, lo);
  x = x < splat(88.0f) ? x : splat(88.0f);
  const v16 magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const v16 t = x * splat(1.44269504088896341f) + magic;
  const v16 n = t - magic;
  v16 r = x - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  v16 p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.0f);
  i16v ti, mi;
  std::memcpy(&ti, &t, sizeof ti);
  std::memcpy(&mi, &magic, sizeof mi);
  const i16v bits = (ti - mi + 127) << 23;
  v16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return zero ? splat(0.0f) : p * scale;
}

// One (sequence, head): rows padded to Tp (a multiple of 16) with zeros.
struct Pair {
  int T = 0, Tp = 0, D = 0;
  std::vector<float> q, k, v, kT, vT;  // [Tp, D] and, transposed, [D, Tp]
  void resize(int t, int d) {
    T = t, D = d, Tp = (t + 15) / 16 * 16;
    for (auto* b : {&q, &k, &v, &kT, &vT}) b->assign((size_t)Tp * D, 0.0f);
  }
};

// Copy rows t of x[n, :, h, :] into dst [Tp, D] (the padding rows stay zero).
inline void gather(float* dst, const float* x, int T, int H, int D, size_t n, int h) {
  const size_t row = (size_t)H * D, base = n * T * row + (size_t)h * D;
  for (int t = 0; t < T; ++t) std::memcpy(dst + (size_t)t * D, x + base + t * row, D * sizeof(float));
}

inline void scatter(float* x, const float* src, int T, int H, int D, size_t n, int h) {
  const size_t row = (size_t)H * D, base = n * T * row + (size_t)h * D;
  for (int t = 0; t < T; ++t) std::memcpy(x + base + t * row, src + (size_t)t * D, D * sizeof(float));
}

inline void transpose(float* dst, const float* src, int Tp, int D) {
  for (int t = 0; t < Tp; ++t)
    for (int d = 0; d < D; ++d) dst[(size_t)d * Tp + t] = src[(size_t)t * D + d];
}

template <int D, int R>
struct Kernel {
  static constexpr int V = D / 16;  // vectors per row

  // s[r][0:n] = scale * a[i0 + r] . bT[:, 0:n] for the R rows of a tile (n a multiple of 16).
  static void products(const float* a, const float* bT, int Tp, int i0, int n, float scale, float* s) {
    for (int j = 0; j < n; j += 16) {
      v16 acc[R] = {};
      for (int d = 0; d < D; ++d) {
        const v16 b = load(bT + (size_t)d * Tp + j);
        for (int r = 0; r < R; ++r) acc[r] += splat(a[(size_t)(i0 + r) * D + d]) * b;
      }
      for (int r = 0; r < R; ++r) store(s + (size_t)r * Tp + j, acc[r] * splat(scale));
    }
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

  // acc[j] += sum_r w[r][j] a[i0 + r] for j < n.
  static void accumulate_columns(const float* w, const float* a, int Tp, int i0, int n, float* acc) {
    v16 ar[R][V];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) ar[r][c] = load(a + (size_t)(i0 + r) * D + 16 * c);
    for (int j = 0; j < n; ++j) {
      v16 sum[V] = {};
      for (int r = 0; r < R; ++r) {
        const v16 x = splat(w[(size_t)r * Tp + j]);
        for (int c = 0; c < V; ++c) sum[c] += x * ar[r][c];
      }
      for (int c = 0; c < V; ++c) store(acc + (size_t)j * D + 16 * c, load(acc + (size_t)j * D + 16 * c) + sum[c]);
    }
  }

  static int tile_keys(int i0, int Tp) { return std::min(Tp, (i0 + R + 15) / 16 * 16); }

  static void forward(const Pair& p, float* o, float* lse, float scale, std::vector<float>& s) {
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

  static void backward(const Pair& p, const float* o, const float* dout, const float* lse, float scale, float* dq,
                       float* dk, float* dv, std::vector<float>& s, std::vector<float>& ds) {
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
        v16 acc = {};
        for (int c = 0; c < V; ++c) acc += load(dout + (size_t)i * D + 16 * c) * load(o + (size_t)i * D + 16 * c);
        const v16 delta = splat(hsum(acc));
        const v16 l = splat(i < p.T ? lse[i] : 0.0f);
        float* sr = s.data() + (size_t)r * Tp;
        float* dr = ds.data() + (size_t)r * Tp;
        for (int j = 0; j < n; j += 16) {
          v16 pr = vexp(load(sr + j) - l);
          if (j + 16 > i + 1)
            for (int u = 0; u < 16; ++u)
              if (j + u > i || i >= p.T) pr[u] = 0.0f;  // masked keys, padding rows
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
  Pair pair;
  std::vector<float> o, dout, dq, dk, dv, s, ds;
};

thread_local Scratch scratch;  // one per thread: host devices may run on several

template <int D, int R>
void run_forward(const float* q, const float* k, const float* v, float* o, float* lse, size_t N, int T, int H) {
  Scratch& w = scratch;
  Pair& p = w.pair;
  if (p.T != T || p.D != D) p.resize(T, D);
  w.o.assign((size_t)p.Tp * D, 0.0f);
  const float scale = 1.0f / std::sqrt((float)D);
  for (size_t n = 0; n < N; ++n)
    for (int h = 0; h < H; ++h) {
      gather(p.q.data(), q, T, H, D, n, h);
      gather(p.k.data(), k, T, H, D, n, h);
      gather(p.v.data(), v, T, H, D, n, h);
      transpose(p.kT.data(), p.k.data(), p.Tp, D);
      Kernel<D, R>::forward(p, w.o.data(), lse + (n * H + h) * T, scale, w.s);
      scatter(o, w.o.data(), T, H, D, n, h);
    }
}

template <int D, int R>
void run_backward(const float* q, const float* k, const float* v, const float* o, const float* lse,
                  const float* dout, float* dq, float* dk, float* dv, size_t N, int T, int H) {
  Scratch& w = scratch;
  Pair& p = w.pair;
  if (p.T != T || p.D != D) p.resize(T, D);
  for (auto* b : {&w.o, &w.dout, &w.dq, &w.dk, &w.dv}) b->assign((size_t)p.Tp * D, 0.0f);
  const float scale = 1.0f / std::sqrt((float)D);
  for (size_t n = 0; n < N; ++n)
    for (int h = 0; h < H; ++h) {
      gather(p.q.data(), q, T, H, D, n, h);
      gather(p.k.data(), k, T, H, D, n, h);
      gather(p.v.data(), v, T, H, D, n, h);
      gather(w.o.data(), o, T, H, D, n, h);
      gather(w.dout.data(), dout, T, H, D, n, h);
      transpose(p.kT.data(), p.k.data(), p.Tp, D);
      transpose(p.vT.data(), p.v.data(), p.Tp, D);
      Kernel<D, R>::backward(p, w.o.data(), w.dout.data(), lse + (n * H + h) * T, scale, w.dq.data(),
                             w.dk.data(), w.dv.data(), w.s, w.ds);
      scatter(dq, w.dq.data(), T, H, D, n, h);
      scatter(dk, w.dk.data(), T, H, D, n, h);
      scatter(dv, w.dv.data(), T, H, D, n, h);
    }
}

struct Shape {
  size_t N = 1;
  int T = 0, H = 0, D = 0;
};

ffi::Error shape_of(const ffi::Buffer<ffi::F32>& x, Shape& s) {
  const auto dims = x.dimensions();
  if (dims.size() < 3) return ffi::Error::InvalidArgument("attention: inputs must be [..., T, H, D]");
  const size_t r = dims.size();
  s.T = (int)dims[r - 3], s.H = (int)dims[r - 2], s.D = (int)dims[r - 1];
  s.N = 1;
  for (size_t i = 0; i + 3 < r; ++i) s.N *= (size_t)dims[i];
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

ffi::Error Forward(ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k, ffi::Buffer<ffi::F32> v,
                   ffi::ResultBuffer<ffi::F32> o, ffi::ResultBuffer<ffi::F32> lse) {
  Shape s;
  if (auto e = shape_of(q, s); e.failure()) return e;
#define CALL(D_, R_) \
  run_forward<D_, R_>(q.typed_data(), k.typed_data(), v.typed_data(), o->typed_data(), lse->typed_data(), s.N, s.T, s.H)
  REGMIX_DISPATCH(s.D, CALL)
#undef CALL
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k, ffi::Buffer<ffi::F32> v,
                    ffi::Buffer<ffi::F32> o, ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> dout,
                    ffi::ResultBuffer<ffi::F32> dq, ffi::ResultBuffer<ffi::F32> dk, ffi::ResultBuffer<ffi::F32> dv) {
  Shape s;
  if (auto e = shape_of(q, s); e.failure()) return e;
#define CALL(D_, R_)                                                                                          \
  run_backward<D_, R_>(q.typed_data(), k.typed_data(), v.typed_data(), o.typed_data(), lse.typed_data(),     \
                       dout.typed_data(), dq->typed_data(), dk->typed_data(), dv->typed_data(), s.N, s.T, s.H)
  REGMIX_DISPATCH(s.D, CALL)
#undef CALL
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixAttentionForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixAttentionBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
