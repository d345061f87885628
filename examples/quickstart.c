/* spattn from C: dense attention and a diffusion session through the C API.
 * Build: gcc -std=c11 -O2 quickstart.c $(pkg-config --cflags --libs spattn) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <spattn/spattn.h>

int main(void) {
  const int64_t heads = 4, n = 512, d = 64;
  /* scale 0: 1/sqrt(d); causal 0 (bidirectional), q_offset unused */
  const spattn_shape shape = {heads, heads, n, n, d, 0.0f, 0, 0};
  const size_t count = (size_t)(heads * n * d);
  float* q = malloc(count * sizeof(float));
  float* k = malloc(count * sizeof(float));
  float* v = malloc(count * sizeof(float));
  float* out = malloc(count * sizeof(float));
  if (!q || !k || !v || !out) return 1;
  for (size_t i = 0; i < count; ++i) q[i] = sinf(0.001f * i), k[i] = cosf(0.002f * i), v[i] = sinf(0.003f * i);

  /* Every call returns a status; spattn_last_error() says why it failed. */
  if (spattn_dense_attention(&shape, q, k, v, out, /*threads*/ 0) != SPATTN_OK) {
    fprintf(stderr, "dense: %s\n", spattn_last_error());
    return 1;
  }

  spattn_session_config cfg;
  spattn_session_config_default(&cfg); /* SparseD, 20% dense warmup, top-10% of key blocks */
  cfg.total_steps = 8;
  spattn_session* layer = NULL;
  if (spattn_session_create(&shape, &cfg, &layer) != SPATTN_OK) {
    fprintf(stderr, "session: %s\n", spattn_last_error());
    return 1;
  }
  for (int step = 0; step < cfg.total_steps; ++step) {
    spattn_step_report r;
    if (spattn_session_step(layer, q, k, v, out, &r) != SPATTN_OK) {
      fprintf(stderr, "step: %s\n", spattn_last_error());
      return 1;
    }
    printf("step %d: %s, %.2f ms, density %.2f\n", step, spattn_step_path_name(r.path), r.ms, r.density);
  }
  spattn_session_destroy(layer);
  printf("spattn %s\n", spattn_version());
  free(q), free(k), free(v), free(out);
  return 0;
}
