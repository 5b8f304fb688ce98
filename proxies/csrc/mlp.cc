// SwiGLU's and RMSNorm's elementwise work on CPUs, forward and backward, as XLA FFI targets
// (proxies/cpu_kernels.py). XLA:CPU spends several passes over memory on each (the gate's
// sigmoid, its product with the up half, each gradient product; the norm's mean of squares, its
// scale, the gradient's row sums); here each is one pass over its rows, with the row in cache.
//
// swiglu: h = [gate | up] is [N, 2F] (the fused projection's output), a = silu(gate) * up is [N, F].
// rms_norm: x is [N, d] in G equal groups of rows (the proxies of a vmapped group), scale [G, d];
// y = x * r * scale with r = 1 / sqrt(mean(x^2) + eps) per row, saved [N] for the backward.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace regmix_simd;

inline v16 sigmoid(v16 x) { return splat(1.0f) / (splat(1.0f) + vexp(-x)); }
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void swiglu_forward(const float* h, float* a, size_t N, size_t F) {
  for (size_t n = 0; n < N; ++n) {
    const float *g = h + n * 2 * F, *u = g + F;
    float* out = a + n * F;
    size_t j = 0;
    for (; j + 16 <= F; j += 16) {
      const v16 x = load(g + j);
      store(out + j, x * sigmoid(x) * load(u + j));
    }
    for (; j < F; ++j) out[j] = g[j] * sigmoid(g[j]) * u[j];
  }
}

// d up = da * silu(g); d gate = da * up * s * (1 + g (1 - s)), s = sigmoid(g).
void swiglu_backward(const float* h, const float* da, float* dh, size_t N, size_t F) {
  for (size_t n = 0; n < N; ++n) {
    const float *g = h + n * 2 * F, *u = g + F, *d = da + n * F;
    float *dg = dh + n * 2 * F, *du = dg + F;
    size_t j = 0;
    for (; j + 16 <= F; j += 16) {
      const v16 x = load(g + j), s = sigmoid(x), dj = load(d + j);
      store(du + j, dj * x * s);
      store(dg + j, dj * load(u + j) * s * (splat(1.0f) + x * (splat(1.0f) - s)));
    }
    for (; j < F; ++j) {
      const float s = sigmoid(g[j]);
      du[j] = d[j] * g[j] * s;
      dg[j] = d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
    }
  }
}

inline float row_dot(const float* a, const float* b, size_t d) {
  v16 acc = {};
  size_t j = 0;
  for (; j + 16 <= d; j += 16) acc += load(a + j) * load(b + j);
  float s = hsum(acc);
  for (; j < d; ++j) s += a[j] * b[j];
  return s;
}

void rms_forward(const float* x, const float* scale, float* y, float* r, size_t N, size_t d, size_t G, float eps) {
  const size_t rows = N / G;
  for (size_t n = 0; n < N; ++n) {
    const float *xn = x + n * d, *sc = scale + (n / rows) * d;
    const float rn = 1.0f / std::sqrt(row_dot(xn, xn, d) / (float)d + eps);
    r[n] = rn;
    float* yn = y + n * d;
    size_t j = 0;
    for (; j + 16 <= d; j += 16) store(yn + j, load(xn + j) * splat(rn) * load(sc + j));
    for (; j < d; ++j) yn[j] = xn[j] * rn * sc[j];
  }
}

// g = dy * scale; dx = r (g - x r^2 mean(g x)); dscale = sum over a group's rows of dy x r.
void rms_backward(const float* x, const float* scale, const float* r, const float* dy, float* dx, float* dscale,
                  size_t N, size_t d, size_t G) {
  const size_t rows = N / G;
  std::vector<float> g(d);
  std::memset(dscale, 0, G * d * sizeof(float));
  for (size_t n = 0; n < N; ++n) {
    const float *xn = x + n * d, *dyn = dy + n * d, *sc = scale + (n / rows) * d;
    float *dxn = dx + n * d, *ds = dscale + (n / rows) * d;
    const float rn = r[n];
    for (size_t j = 0; j < d; ++j) g[j] = dyn[j] * sc[j];
    const float c = rn * rn * rn * row_dot(g.data(), xn, d) / (float)d;
    size_t j = 0;
    for (; j + 16 <= d; j += 16) {
      const v16 xv = load(xn + j);
      store(dxn + j, splat(rn) * load(g.data() + j) - splat(c) * xv);
      store(ds + j, load(ds + j) + load(dyn + j) * xv * splat(rn));
    }
    for (; j < d; ++j) {
      dxn[j] = rn * g[j] - c * xn[j];
      ds[j] += dyn[j] * xn[j] * rn;
    }
  }
}

size_t rows_of(const ffi::Buffer<ffi::F32>& x) {
  const auto dims = x.dimensions();
  size_t n = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) n *= (size_t)dims[i];
  return n;
}

size_t last_dim(const ffi::Buffer<ffi::F32>& x) {
  const auto dims = x.dimensions();
  return dims.size() ? (size_t)dims[dims.size() - 1] : 1;
}

ffi::Error SwigluForward(ffi::Buffer<ffi::F32> h, ffi::ResultBuffer<ffi::F32> a) {
  if (last_dim(h) % 2) return ffi::Error::InvalidArgument("swiglu: the last axis must be [gate | up]");
  swiglu_forward(h.typed_data(), a->typed_data(), rows_of(h), last_dim(h) / 2);
  return ffi::Error::Success();
}

ffi::Error SwigluBackward(ffi::Buffer<ffi::F32> h, ffi::Buffer<ffi::F32> da, ffi::ResultBuffer<ffi::F32> dh) {
  if (last_dim(h) % 2) return ffi::Error::InvalidArgument("swiglu: the last axis must be [gate | up]");
  swiglu_backward(h.typed_data(), da.typed_data(), dh->typed_data(), rows_of(h), last_dim(h) / 2);
  return ffi::Error::Success();
}

ffi::Error check_groups(size_t N, size_t d, const ffi::Buffer<ffi::F32>& scale, size_t& G) {
  G = scale.element_count() / d;
  if (G == 0 || G * d != scale.element_count() || N % G)
    return ffi::Error::InvalidArgument("rms_norm: scale must be [G, d] with the rows in G equal groups");
  return ffi::Error::Success();
}

ffi::Error RmsForward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale, ffi::ResultBuffer<ffi::F32> y,
                      ffi::ResultBuffer<ffi::F32> r, float eps) {
  const size_t N = rows_of(x), d = last_dim(x);
  size_t G;
  if (auto e = check_groups(N, d, scale, G); e.failure()) return e;
  rms_forward(x.typed_data(), scale.typed_data(), y->typed_data(), r->typed_data(), N, d, G, eps);
  return ffi::Error::Success();
}

ffi::Error RmsBackward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale, ffi::Buffer<ffi::F32> r,
                       ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dscale) {
  const size_t N = rows_of(x), d = last_dim(x);
  size_t G;
  if (auto e = check_groups(N, d, scale, G); e.failure()) return e;
  rms_backward(x.typed_data(), scale.typed_data(), r.typed_data(), dy.typed_data(), dx->typed_data(),
               dscale->typed_data(), N, d, G);
  return ffi::Error::Success();
}

}  // namespace

using B = ffi::Buffer<ffi::F32>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixSwigluForward, SwigluForward, ffi::Ffi::Bind().Arg<B>().Ret<B>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixSwigluBackward, SwigluBackward, ffi::Ffi::Bind().Arg<B>().Arg<B>().Ret<B>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixRmsNormForward, RmsForward,
                              ffi::Ffi::Bind().Arg<B>().Arg<B>().Ret<B>().Ret<B>().Attr<float>("eps"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RegmixRmsNormBackward, RmsBackward,
                              ffi::Ffi::Bind().Arg<B>().Arg<B>().Arg<B>().Arg<B>().Ret<B>().Ret<B>());
