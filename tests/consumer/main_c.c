/* A C user of the installed library: the C API from a C11 program. */
#include <math.h>
#include <stdio.h>
#include <spattn/config.h>
#include <spattn/spattn.h>
#include <string.h>

int main(void) {
  spattn_shape s = {2, 1, 33, 47, 32, 0.0f, 0, 0};
  static float q[2 * 33 * 32], k[47 * 32], v[47 * 32], out[2 * 33 * 32];
  for (int i = 0; i < 2 * 33 * 32; ++i) q[i] = sinf(0.37f * (float)i);
  for (int i = 0; i < 47 * 32; ++i) k[i] = cosf(0.11f * (float)i), v[i] = sinf(0.05f * (float)i);
  if (spattn_dense_attention(&s, q, k, v, out, 0) != SPATTN_OK) {
    fprintf(stderr, "consumer_c: %s\n", spattn_last_error());
    return 1;
  }
  s.head_dim = 24; /* not a multiple of 16: must be refused with a message, not crash */
  if (spattn_dense_attention(&s, q, k, v, out, 0) == SPATTN_OK || spattn_last_error()[0] == '\0') return 1;
  if (strcmp(spattn_version(), SPATTN_VERSION_STRING) != 0) {
    fprintf(stderr, "consumer_c: library %s, headers %s\n", spattn_version(), SPATTN_VERSION_STRING);
    return 1;
  }
  printf("consumer_c: ok (spattn %s); misuse refused: %s\n", spattn_version(), spattn_last_error());
  return 0;
}
