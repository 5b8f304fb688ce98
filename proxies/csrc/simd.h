// Vector helpers shared by the CPU kernels (GCC vector extensions: 16 floats, AVX-512 where the CPU
// has it, narrower vectors otherwise).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace regmix_simd {

typedef float v16 __attribute__((vector_size(64), aligned(64)));
typedef int32_t i16v __attribute__((vector_size(64), aligned(64)));

inline v16 splat(float x) { return (v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
inline v16 load(const float* p) { v16 r; std::memcpy(&r, p, sizeof r); return r; }
inline void store(float* p, v16 x) { std::memcpy(p, &x, sizeof x); }
inline v16 vmax(v16 a, v16 b) { return a > b ? a : b; }
// Horizontal max and sum by halving (a tree: log2(16) dependent steps instead of 15).
inline float hmax(v16 x) {
  x = vmax(x, __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  x = vmax(x, __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
  x = vmax(x, __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
  return std::max(x[0], x[1]);
}
inline float hsum(v16 x) {
  x += __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  x += __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  x += __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  return x[0] + x[1];
}

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

}  // namespace regmix_simd
