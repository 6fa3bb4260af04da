// Fused-solver LTC sequence, forward and analytic backward, as one native CPU kernel.
//
// The same function as ltc_fast.step / step_backward with solver "fused" (see ltc_native.py):
// every batch row runs its whole sequence on one thread, the synapse activations are evaluated
// with ATen's vectorised exp, and the backward pass recomputes them instead of storing them.
// Recurrent synapses are post-synaptic-major (post, slots); index (post, slots) names each
// slot's pre-synaptic neuron for a sparse wiring, and is undefined for a dense one (slot k = k).

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <vector>

namespace {

using at::vec::Vectorized;

struct Layout {
  int64_t post;    // neurons
  int64_t slots;   // synapse slots per neuron
  const int64_t* index;  // nullptr for dense
};

// The pre-synaptic value of every slot of neuron i: v itself (dense) or its gather (sparse).
template <typename T>
inline const T* pre_values(const Layout& L, const T* v, T* gathered, int64_t i) {
  return L.index == nullptr ? v : gathered + i * L.slots;
}

template <typename T>
void gather(const Layout& L, const T* v, T* gathered) {
  if (L.index == nullptr) return;
  for (int64_t n = 0; n < L.post * L.slots; ++n) gathered[n] = v[L.index[n]];
}

template <typename T>
inline T sigmoid(T z) { return T(1) / (T(1) + std::exp(-z)); }

// exp(-z): float32 uses ATen's polynomial exp (20 ulp, ~1e-6 relative, inlined), float64 Sleef's.
template <typename T>
inline Vectorized<T> exp_neg(const Vectorized<T>& z) { return z.neg().exp(); }
template <>
inline Vectorized<float> exp_neg(const Vectorized<float>& z) { return z.neg().exp_u20(); }

// 1 / x: float32 refines the 14-bit hardware estimate by one Newton step (~1e-7 relative), float64 divides.
template <typename T>
inline Vectorized<T> reciprocal(const Vectorized<T>& x) { return x.reciprocal(); }
#if defined(CPU_CAPABILITY_AVX512)
template <>
inline Vectorized<float> reciprocal(const Vectorized<float>& x) {
  const __m512 estimate = _mm512_rcp14_ps(x);
  return _mm512_mul_ps(estimate, _mm512_fnmadd_ps(x, estimate, _mm512_set1_ps(2.f)));
}
#endif

template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& z) {
  return reciprocal(Vectorized<T>(T(1)) + exp_neg(z));
}

template <typename T>
inline T horizontal_sum(const Vectorized<T>& x) {
  T lanes[Vectorized<T>::size()];
  x.store(lanes);
  T total = T(0);
  for (int64_t k = 0; k < Vectorized<T>::size(); ++k) total += lanes[k];
  return total;
}

// num[i] = sum_k we s, cond[i] = sum_k w s with s = sigmoid(sigma (pre - mu)).
template <typename T>
void synapse_sums(const Layout& L, const T* v, T* gathered, const T* sigma, const T* mu, const T* w,
                  const T* we, T* num, T* cond) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t K = L.slots;
  gather(L, v, gathered);
  for (int64_t i = 0; i < L.post; ++i) {
    const T* x = pre_values(L, v, gathered, i);
    const int64_t row = i * K;
    V acc_num(T(0)), acc_cond(T(0));
    int64_t k = 0;
    for (; k + W <= K; k += W) {
      V s = sigmoid((V::loadu(x + k) - V::loadu(mu + row + k)) * V::loadu(sigma + row + k));
      acc_num = at::vec::fmadd(s, V::loadu(we + row + k), acc_num);
      acc_cond = at::vec::fmadd(s, V::loadu(w + row + k), acc_cond);
    }
    T n = horizontal_sum(acc_num), c = horizontal_sum(acc_cond);
    for (; k < K; ++k) {
      T s = sigmoid((x[k] - mu[row + k]) * sigma[row + k]);
      n += s * we[row + k];
      c += s * w[row + k];
    }
    num[i] = n;
    cond[i] = c;
  }
}

// The same sums from the pre-synaptic-major (pre, post) dense layout, vectorised over the
// post-synaptic neurons: no horizontal reductions, which dominate the post-major loop at 64 units.
template <typename T>
void synapse_sums_pre_major(int64_t pre, int64_t N, const T* v, const T* sigma, const T* mu, const T* w,
                            const T* we, T* num, T* cond) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  int64_t i = 0;
  for (; i + W <= N; i += W) {
    V acc_num(T(0)), acc_cond(T(0));
    for (int64_t j = 0; j < pre; ++j) {
      const int64_t at = j * N + i;
      V s = sigmoid((V(v[j]) - V::loadu(mu + at)) * V::loadu(sigma + at));
      acc_num = at::vec::fmadd(s, V::loadu(we + at), acc_num);
      acc_cond = at::vec::fmadd(s, V::loadu(w + at), acc_cond);
    }
    acc_num.store(num + i);
    acc_cond.store(cond + i);
  }
  for (; i < N; ++i) {
    T n = T(0), c = T(0);
    for (int64_t j = 0; j < pre; ++j) {
      const int64_t at = j * N + i;
      T s = sigmoid((v[j] - mu[at]) * sigma[at]);
      n += s * we[at];
      c += s * w[at];
    }
    num[i] = n;
    cond[i] = c;
  }
}

struct Params {
  torch::Tensor gleak, vleak, cm, sigma, mu, w, we, index;
};

Params contiguous_params(const torch::Tensor& gleak, const torch::Tensor& vleak, const torch::Tensor& cm,
                         const torch::Tensor& sigma, const torch::Tensor& mu, const torch::Tensor& w,
                         const torch::Tensor& we, const c10::optional<torch::Tensor>& index) {
  return Params{gleak.contiguous(), vleak.contiguous(), cm.contiguous(), sigma.contiguous(), mu.contiguous(),
                w.contiguous(), we.contiguous(), index.has_value() ? index->contiguous() : torch::Tensor()};
}

// Forward over (time, batch): states (time, batch, post); with trace, (batch, time, unfolds, 3, post)
// holding the state entering every unfold and the two synapse sums it produced.
template <typename T>
void forward_impl(const torch::Tensor& v0, const torch::Tensor& sn, const torch::Tensor& sc,
                  const torch::Tensor& h, const torch::Tensor& keep, const Params& p, bool pre_major,
                  int64_t unfolds, double epsilon, torch::Tensor& states, torch::Tensor* trace) {
  const int64_t steps = sn.size(0), batch = sn.size(1), N = sn.size(2);
  const Layout L{N, p.sigma.size(1), p.index.defined() ? p.index.data_ptr<int64_t>() : nullptr};
  const T *gleak = p.gleak.data_ptr<T>(), *vleak = p.vleak.data_ptr<T>(), *cm = p.cm.data_ptr<T>();
  const T *sigma = p.sigma.data_ptr<T>(), *mu = p.mu.data_ptr<T>(), *w = p.w.data_ptr<T>(),
          *we = p.we.data_ptr<T>();
  const T *sn_p = sn.data_ptr<T>(), *sc_p = sc.data_ptr<T>(), *h_p = h.data_ptr<T>(), *v0_p = v0.data_ptr<T>();
  const T* keep_p = keep.defined() ? keep.data_ptr<T>() : nullptr;
  T* out = states.data_ptr<T>();
  T* tr = trace ? trace->data_ptr<T>() : nullptr;
  const T eps = static_cast<T>(epsilon);
  const int64_t grain = (batch * N * L.slots < (1 << 16)) ? batch : 1;  // tiny problems stay on one thread
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> v(N), num(N), cond(N), cm_t(N), gathered(L.index ? N * L.slots : 0);
    for (int64_t b = begin; b < end; ++b) {
      std::copy(v0_p + b * N, v0_p + (b + 1) * N, v.begin());
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t tb = t * batch + b;
        if (keep_p && keep_p[tb] == T(0)) std::fill(v.begin(), v.end(), T(0));
        const T* sn_t = sn_p + tb * N;
        const T* sc_t = sc_p + tb * N;
        for (int64_t i = 0; i < N; ++i) cm_t[i] = cm[i] / h_p[tb];
        for (int64_t u = 0; u < unfolds; ++u) {
          if (pre_major) {
            synapse_sums_pre_major(N, N, v.data(), sigma, mu, w, we, num.data(), cond.data());
          } else {
            synapse_sums(L, v.data(), gathered.data(), sigma, mu, w, we, num.data(), cond.data());
          }
          if (tr) {
            T* slot = tr + ((b * steps + t) * unfolds + u) * 3 * N;
            std::copy(v.begin(), v.end(), slot);
            std::copy(num.begin(), num.end(), slot + N);
            std::copy(cond.begin(), cond.end(), slot + 2 * N);
          }
          for (int64_t i = 0; i < N; ++i) {
            v[i] = (cm_t[i] * v[i] + gleak[i] * vleak[i] + num[i] + sn_t[i]) /
                   (cm_t[i] + gleak[i] + cond[i] + sc_t[i] + eps);
          }
        }
        std::copy(v.begin(), v.end(), out + tb * N);
      }
    }
  });
}

std::vector<torch::Tensor> forward(torch::Tensor v0, torch::Tensor sn, torch::Tensor sc, torch::Tensor h,
                                   c10::optional<torch::Tensor> keep, torch::Tensor gleak, torch::Tensor vleak,
                                   torch::Tensor cm, torch::Tensor sigma, torch::Tensor mu, torch::Tensor w,
                                   torch::Tensor we, c10::optional<torch::Tensor> index, bool pre_major,
                                   int64_t unfolds, double epsilon, bool with_trace) {
  Params p = contiguous_params(gleak, vleak, cm, sigma, mu, w, we, index);
  v0 = v0.contiguous(), sn = sn.contiguous(), sc = sc.contiguous(), h = h.contiguous();
  const int64_t steps = sn.size(0), batch = sn.size(1), N = sn.size(2);
  auto states = torch::empty({steps, batch, N}, sn.options());
  torch::Tensor trace = with_trace ? torch::empty({batch, steps, unfolds, 3, N}, sn.options()) : torch::Tensor();
  torch::Tensor keep_t = keep.has_value() ? keep->contiguous() : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(sn.scalar_type(), "ltc_native_forward", [&] {
    forward_impl<scalar_t>(v0, sn, sc, h, keep_t, p, pre_major && !index.has_value(), unfolds, epsilon, states,
                           with_trace ? &trace : nullptr);
  });
  return with_trace ? std::vector<torch::Tensor>{states, trace} : std::vector<torch::Tensor>{states};
}

// Working memory of one batch row in the backward pass.
template <typename T>
struct Row {
  std::vector<T> g, g_top, g_bottom, g_pre, cm_t, g_cm_t, gathered, g_slots;
  Row(int64_t N, int64_t S, bool sparse)
      : g(N), g_top(N), g_bottom(N), g_pre(N), cm_t(N), g_cm_t(N), gathered(sparse ? S : 0), g_slots(sparse ? S : 0) {}
};

// Gradients of one fused update's synapse sums for R batch rows at once (the rows share every
// parameter load and every update of the parameter gradients): recompute s, push g_num = g_top,
// g_cond = g_bottom back to the pre-synaptic values (g_pre) and into the parameter gradients G.
template <typename T, int R>
void synapse_vjp(const Layout& L, const T* const* v, Row<T>* rows, const T* sigma, const T* mu, const T* w,
                 const T* we, T* G_sigma, T* G_mu, T* G_w, T* G_we) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t K = L.slots;
  const bool dense = L.index == nullptr;
  for (int r = 0; r < R; ++r) {
    gather(L, v[r], rows[r].gathered.data());
    std::fill(rows[r].g_pre.begin(), rows[r].g_pre.end(), T(0));
  }
  for (int64_t i = 0; i < L.post; ++i) {
    const int64_t row = i * K;
    const T* x[R];
    T* gs_out[R];  // dense: accumulate straight into g_pre[k]; sparse: into the slot, scattered below
    T gt[R], gb[R];
    for (int r = 0; r < R; ++r) {
      x[r] = pre_values(L, v[r], rows[r].gathered.data(), i);
      gs_out[r] = dense ? rows[r].g_pre.data() : rows[r].g_slots.data() + row;
      gt[r] = rows[r].g_top[i];
      gb[r] = rows[r].g_bottom[i];
    }
    int64_t k = 0;
    for (; k + W <= K; k += W) {
      const int64_t at = row + k;
      const V m = V::loadu(mu + at), sg = V::loadu(sigma + at), ww = V::loadu(w + at), wwe = V::loadu(we + at);
      V a_sigma(T(0)), a_mu(T(0)), a_w(T(0)), a_we(T(0));
      for (int r = 0; r < R; ++r) {
        const V top(gt[r]), bottom(gb[r]);
        const V d = V::loadu(x[r] + k) - m;
        const V s = sigmoid(d * sg);
        const V gz = (top * wwe + bottom * ww) * s * (V(T(1)) - s);
        const V gs = gz * sg;
        (dense ? V::loadu(gs_out[r] + k) + gs : gs).store(gs_out[r] + k);
        a_sigma = at::vec::fmadd(gz, d, a_sigma);
        a_mu = a_mu + gs;
        a_w = at::vec::fmadd(s, bottom, a_w);
        a_we = at::vec::fmadd(s, top, a_we);
      }
      (V::loadu(G_sigma + at) + a_sigma).store(G_sigma + at);
      (V::loadu(G_mu + at) - a_mu).store(G_mu + at);
      (V::loadu(G_w + at) + a_w).store(G_w + at);
      (V::loadu(G_we + at) + a_we).store(G_we + at);
    }
    for (; k < K; ++k) {
      const int64_t at = row + k;
      for (int r = 0; r < R; ++r) {
        const T d = x[r][k] - mu[at];
        const T s = sigmoid(d * sigma[at]);
        const T gz = (gt[r] * we[at] + gb[r] * w[at]) * s * (T(1) - s);
        const T gs = gz * sigma[at];
        gs_out[r][k] = dense ? gs_out[r][k] + gs : gs;
        G_sigma[at] += gz * d;
        G_mu[at] -= gs;
        G_w[at] += s * gb[r];
        G_we[at] += s * gt[r];
      }
    }
  }
  if (!dense) {
    for (int r = 0; r < R; ++r) {
      for (int64_t n = 0; n < L.post * K; ++n) rows[r].g_pre[L.index[n]] += rows[r].g_slots[n];
    }
  }
}

// What every row of the backward pass reads and writes.
template <typename T>
struct Backward {
  Layout L;
  int64_t steps, batch, N, unfolds;
  T eps;
  const T *gleak, *vleak, *cm, *sigma, *mu, *w, *we, *g_states, *trace, *sn, *sc, *h, *keep;
  T *g_v0, *g_sn, *g_sc, *g_h;
};

// The backward pass of R batch rows b0 .. b0 + R - 1 through the whole sequence; parameter
// gradients accumulate into acc (gleak, vleak, cm: N each; sigma, mu, w, we: N x slots each).
template <typename T, int R>
void backward_rows(const Backward<T>& c, int64_t b0, Row<T>* rows, T* acc) {
  const int64_t N = c.N, S = N * c.L.slots;
  T *G_gleak = acc, *G_vleak = acc + N, *G_cm = acc + 2 * N;
  T *G_sigma = acc + 3 * N, *G_mu = G_sigma + S, *G_w = G_mu + S, *G_we = G_w + S;
  for (int r = 0; r < R; ++r) std::fill(rows[r].g.begin(), rows[r].g.end(), T(0));
  for (int64_t t = c.steps - 1; t >= 0; --t) {
    for (int r = 0; r < R; ++r) {
      const int64_t tb = t * c.batch + b0 + r;
      Row<T>& row = rows[r];
      for (int64_t i = 0; i < N; ++i) {
        row.g[i] += c.g_states[tb * N + i];
        row.cm_t[i] = c.cm[i] / c.h[tb];
        row.g_cm_t[i] = T(0);
      }
      std::fill(c.g_sn + tb * N, c.g_sn + (tb + 1) * N, T(0));
      std::fill(c.g_sc + tb * N, c.g_sc + (tb + 1) * N, T(0));
    }
    for (int64_t u = c.unfolds - 1; u >= 0; --u) {
      const T* v[R];
      for (int r = 0; r < R; ++r) {
        const int64_t tb = t * c.batch + b0 + r;
        const T* slot = c.trace + (((b0 + r) * c.steps + t) * c.unfolds + u) * 3 * N;
        const T *num = slot + N, *cond = slot + 2 * N, *sn_t = c.sn + tb * N, *sc_t = c.sc + tb * N;
        T *gsn = c.g_sn + tb * N, *gsc = c.g_sc + tb * N;
        Row<T>& row = rows[r];
        v[r] = slot;
        for (int64_t i = 0; i < N; ++i) {
          const T bottom = row.cm_t[i] + c.gleak[i] + cond[i] + sc_t[i] + c.eps;
          const T v_out = (row.cm_t[i] * slot[i] + c.gleak[i] * c.vleak[i] + num[i] + sn_t[i]) / bottom;
          row.g_top[i] = row.g[i] / bottom;
          row.g_bottom[i] = -row.g_top[i] * v_out;
          gsn[i] += row.g_top[i];
          gsc[i] += row.g_bottom[i];
          G_gleak[i] += row.g_top[i] * c.vleak[i] + row.g_bottom[i];
          G_vleak[i] += row.g_top[i] * c.gleak[i];
          row.g_cm_t[i] += row.g_top[i] * slot[i] + row.g_bottom[i];
        }
      }
      synapse_vjp<T, R>(c.L, v, rows, c.sigma, c.mu, c.w, c.we, G_sigma, G_mu, G_w, G_we);
      for (int r = 0; r < R; ++r) {
        for (int64_t i = 0; i < N; ++i) rows[r].g[i] = rows[r].g_pre[i] + rows[r].g_top[i] * rows[r].cm_t[i];
      }
    }
    for (int r = 0; r < R; ++r) {
      const int64_t tb = t * c.batch + b0 + r;
      Row<T>& row = rows[r];
      T gh = T(0);
      for (int64_t i = 0; i < N; ++i) {
        gh -= row.g_cm_t[i] * row.cm_t[i] / c.h[tb];
        G_cm[i] += row.g_cm_t[i] / c.h[tb];
      }
      c.g_h[tb] = gh;
      if (c.keep && c.keep[tb] == T(0)) std::fill(row.g.begin(), row.g.end(), T(0));
    }
  }
  for (int r = 0; r < R; ++r) std::copy(rows[r].g.begin(), rows[r].g.end(), c.g_v0 + (b0 + r) * N);
}

template <typename T>
void backward_impl(const torch::Tensor& g_states, const torch::Tensor& trace, const torch::Tensor& sn,
                   const torch::Tensor& sc, const torch::Tensor& h, const torch::Tensor& keep, const Params& p,
                   int64_t unfolds, double epsilon, std::vector<torch::Tensor>& out) {
  const int64_t steps = sn.size(0), batch = sn.size(1), N = sn.size(2);
  const Layout L{N, p.sigma.size(1), p.index.defined() ? p.index.data_ptr<int64_t>() : nullptr};
  const int64_t S = N * L.slots;
  const Backward<T> c{L, steps, batch, N, unfolds, static_cast<T>(epsilon),
                      p.gleak.data_ptr<T>(), p.vleak.data_ptr<T>(), p.cm.data_ptr<T>(), p.sigma.data_ptr<T>(),
                      p.mu.data_ptr<T>(), p.w.data_ptr<T>(), p.we.data_ptr<T>(), g_states.data_ptr<T>(),
                      trace.data_ptr<T>(), sn.data_ptr<T>(), sc.data_ptr<T>(), h.data_ptr<T>(),
                      keep.defined() ? keep.data_ptr<T>() : nullptr, out[0].data_ptr<T>(), out[1].data_ptr<T>(),
                      out[2].data_ptr<T>(), out[3].data_ptr<T>()};
  // Per-thread parameter gradients, summed at the end.
  const int64_t threads = at::get_num_threads();
  std::vector<std::vector<T>> partial(threads, std::vector<T>(3 * N + 4 * S, T(0)));
  // Pairs of rows: a thread gets an even number of rows, so only the last pair may be a single row.
  const int64_t pairs = (batch + 1) / 2;
  const int64_t grain = (batch * S < (1 << 16)) ? pairs : 1;
  at::parallel_for(0, pairs, grain, [&](int64_t begin, int64_t end) {
    T* acc = partial[at::get_thread_num()].data();
    std::vector<Row<T>> rows(2, Row<T>(N, S, L.index != nullptr));
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b0 = 2 * pair;
      if (b0 + 1 < batch) {
        backward_rows<T, 2>(c, b0, rows.data(), acc);
      } else {
        backward_rows<T, 1>(c, b0, rows.data(), acc);
      }
    }
  });
  T* dst[7] = {out[4].data_ptr<T>(), out[5].data_ptr<T>(), out[6].data_ptr<T>(), out[7].data_ptr<T>(),
               out[8].data_ptr<T>(), out[9].data_ptr<T>(), out[10].data_ptr<T>()};
  const int64_t offset[7] = {0, N, 2 * N, 3 * N, 3 * N + S, 3 * N + 2 * S, 3 * N + 3 * S};
  const int64_t size[7] = {N, N, N, S, S, S, S};
  for (int j = 0; j < 7; ++j) {
    for (int64_t n = 0; n < size[j]; ++n) {
      T total = T(0);
      for (const auto& acc : partial) total += acc[offset[j] + n];
      dst[j][n] = total;
    }
  }
}

// Returns the gradients w.r.t. v0, sn, sc, h, gleak, vleak, cm, sigma, mu, w, we.
std::vector<torch::Tensor> backward(torch::Tensor g_states, torch::Tensor trace, torch::Tensor sn,
                                    torch::Tensor sc, torch::Tensor h, c10::optional<torch::Tensor> keep,
                                    torch::Tensor gleak, torch::Tensor vleak, torch::Tensor cm, torch::Tensor sigma,
                                    torch::Tensor mu, torch::Tensor w, torch::Tensor we,
                                    c10::optional<torch::Tensor> index, int64_t unfolds, double epsilon) {
  Params p = contiguous_params(gleak, vleak, cm, sigma, mu, w, we, index);
  g_states = g_states.contiguous(), trace = trace.contiguous(), sn = sn.contiguous(), sc = sc.contiguous();
  h = h.contiguous();
  std::vector<torch::Tensor> out;  // contiguous, as the kernel writes them
  for (const auto& like : {g_states[0], sn, sc, h, p.gleak, p.vleak, p.cm, p.sigma, p.mu, p.w, p.we}) {
    out.push_back(torch::empty(like.sizes(), like.options()));
  }
  torch::Tensor keep_t = keep.has_value() ? keep->contiguous() : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(sn.scalar_type(), "ltc_native_backward", [&] {
    backward_impl<scalar_t>(g_states, trace, sn, sc, h, keep_t, p, unfolds, epsilon, out);
  });
  return out;
}

// softplus(x) = log(1 + exp(x)), x itself above 20 (torch.nn.functional.softplus's threshold).
template <typename T>
void positive(const T* raw, const T* mask, int64_t n, bool implicit, T* out) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  int64_t k = 0;
  for (; k + W <= n; k += W) {
    V x = V::loadu(raw + k);
    V y = implicit ? V::blendv(x.exp().log1p(), x, x > V(T(20))) : x;
    (mask ? y * V::loadu(mask + k) : y).store(out + k);
  }
  for (; k < n; ++k) {
    T y = implicit ? (raw[k] > T(20) ? raw[k] : std::log1p(std::exp(raw[k]))) : raw[k];
    out[k] = mask ? y * mask[k] : y;
  }
}

// The positive, masked weights and w * erev of a (pre, post) synapse population.
template <typename T>
void prepare_synapses(const torch::Tensor& w, const torch::Tensor& erev, const torch::Tensor& mask, bool implicit,
                      std::vector<T>& w_out, std::vector<T>& we_out) {
  const int64_t n = w.numel();
  w_out.resize(n);
  we_out.resize(n);
  positive(w.data_ptr<T>(), mask.data_ptr<T>(), n, implicit, w_out.data());
  const T* e = erev.data_ptr<T>();
  for (int64_t k = 0; k < n; ++k) we_out[k] = w_out[k] * e[k];
}

template <typename T>
void inference_impl(const torch::Tensor& x, const torch::Tensor& v0, const torch::Tensor& dt,
                    const std::vector<torch::Tensor>& t, bool implicit, int64_t unfolds, double epsilon,
                    torch::Tensor& outputs, torch::Tensor& states) {
  // t: the fields of ltc_fast.CellTensors in order: gleak, vleak, cm, sigma, mu, w, erev, sensory sigma, mu, w,
  // erev, sparsity mask, sensory sparsity mask, input_w, input_b, output_w, output_b (the last four optional).
  const int64_t batch = x.size(0), I = x.size(1), N = v0.size(1), O = outputs.size(1);
  std::vector<T> gleak(N), cm(N), w, we, sw, swe;
  positive(t[0].data_ptr<T>(), static_cast<const T*>(nullptr), N, implicit, gleak.data());
  positive(t[2].data_ptr<T>(), static_cast<const T*>(nullptr), N, implicit, cm.data());
  prepare_synapses<T>(t[5], t[6], t[11], implicit, w, we);
  prepare_synapses<T>(t[9], t[10], t[12], implicit, sw, swe);
  const T *vleak = t[1].data_ptr<T>(), *sigma = t[3].data_ptr<T>(), *mu = t[4].data_ptr<T>();
  const T *s_sigma = t[7].data_ptr<T>(), *s_mu = t[8].data_ptr<T>();
  const T* in_w = t[13].defined() ? t[13].data_ptr<T>() : nullptr;
  const T* in_b = t[14].defined() ? t[14].data_ptr<T>() : nullptr;
  const T* out_w = t[15].defined() ? t[15].data_ptr<T>() : nullptr;
  const T* out_b = t[16].defined() ? t[16].data_ptr<T>() : nullptr;
  const T* dt_p = dt.defined() ? dt.data_ptr<T>() : nullptr;
  const T eps = static_cast<T>(epsilon);
  std::vector<T> inputs(I), sn(N), sc(N), num(N), cond(N), cm_t(N), v(N);
  for (int64_t b = 0; b < batch; ++b) {
    const T* xb = x.data_ptr<T>() + b * I;
    for (int64_t j = 0; j < I; ++j) inputs[j] = (in_w ? xb[j] * in_w[j] : xb[j]) + (in_b ? in_b[j] : T(0));
    synapse_sums_pre_major(I, N, inputs.data(), s_sigma, s_mu, sw.data(), swe.data(), sn.data(), sc.data());
    const T h = (dt_p ? dt_p[b] : T(1)) / static_cast<T>(unfolds);
    for (int64_t i = 0; i < N; ++i) cm_t[i] = cm[i] / h;
    std::copy(v0.data_ptr<T>() + b * N, v0.data_ptr<T>() + (b + 1) * N, v.begin());
    for (int64_t u = 0; u < unfolds; ++u) {
      synapse_sums_pre_major(N, N, v.data(), sigma, mu, w.data(), we.data(), num.data(), cond.data());
      for (int64_t i = 0; i < N; ++i) {
        v[i] = (cm_t[i] * v[i] + gleak[i] * vleak[i] + num[i] + sn[i]) /
               (cm_t[i] + gleak[i] + cond[i] + sc[i] + eps);
      }
    }
    std::copy(v.begin(), v.end(), states.data_ptr<T>() + b * N);
    T* out = outputs.data_ptr<T>() + b * O;
    for (int64_t i = 0; i < O; ++i) out[i] = (out_w ? v[i] * out_w[i] : v[i]) + (out_b ? out_b[i] : T(0));
  }
}

// One whole cell step without autograd, from the cell's raw parameters (dense, pre-synaptic-major;
// absent synapses are masked): batch-1 inference in one call. Returns (outputs, new state).
std::vector<torch::Tensor> inference(torch::Tensor x, torch::Tensor v0, c10::optional<torch::Tensor> dt,
                                     std::vector<c10::optional<torch::Tensor>> tensors, bool implicit,
                                     int64_t unfolds, double epsilon, int64_t output_size) {
  std::vector<torch::Tensor> t;
  for (const auto& tensor : tensors) t.push_back(tensor.has_value() ? tensor->contiguous() : torch::Tensor());
  x = x.contiguous(), v0 = v0.contiguous();
  torch::Tensor dt_t = dt.has_value() ? dt->contiguous() : torch::Tensor();
  auto outputs = torch::empty({x.size(0), output_size}, v0.options());
  auto states = torch::empty_like(v0);
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "ltc_native_inference", [&] {
    inference_impl<scalar_t>(x, v0, dt_t, t, implicit, unfolds, epsilon, outputs, states);
  });
  return {outputs, states};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("vector_width", [] { return static_cast<int64_t>(Vectorized<float>::size()); },
        "float32 lanes of the vector instructions the kernel was built for");
  m.def("forward", &forward, "Fused-solver LTC sequence forward (states, optional trace)");
  m.def("inference", &inference, "A whole batch-1 cell step from the raw parameters (no autograd)");
  m.def("backward", &backward, "Fused-solver LTC sequence backward (recomputing synapse activations)");
}
