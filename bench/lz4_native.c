// Native liblz4 decode throughput, for bench/codec.ts to compare the
// AssemblyScript decoder with. No lz4.h on this machine: the prototype is
// declared here; link with -l:liblz4.so.1.
//
// Usage: lz4-native BLOCKS_FILE [SECONDS]
// BLOCKS_FILE: u32 count, then per block u32 rawLen, u32 compLen, compLen
// bytes (little-endian). Decodes all blocks with LZ4_decompress_safe into one
// reused buffer, round after round, for about SECONDS (default 1) after a
// short warm-up, and prints {"gibs":..,"bytes":..,"seconds":..,"blocks":..}.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LZ4_decompress_safe(const char *src, char *dst, int compressedSize, int dstCapacity);

struct block {
  uint32_t raw, comp;
  const char *data;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint32_t rd32(const unsigned char *p) {
  return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s BLOCKS_FILE [SECONDS]\n", argv[0]);
    return 2;
  }
  double seconds = argc > 2 ? atof(argv[2]) : 1.0;
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *file = malloc(size);
  if (!file || fread(file, 1, size, f) != (size_t)size) {
    fprintf(stderr, "cannot read %s\n", argv[1]);
    return 1;
  }
  fclose(f);

  uint32_t count = rd32(file);
  struct block *blocks = calloc(count, sizeof *blocks);
  size_t off = 4;
  uint32_t maxRaw = 0;
  uint64_t rawTotal = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (off + 8 > (size_t)size) {
      fprintf(stderr, "truncated blocks file\n");
      return 1;
    }
    blocks[i].raw = rd32(file + off);
    blocks[i].comp = rd32(file + off + 4);
    blocks[i].data = (const char *)file + off + 8;
    off += 8 + blocks[i].comp;
    if (off > (size_t)size) {
      fprintf(stderr, "truncated blocks file\n");
      return 1;
    }
    if (blocks[i].raw > maxRaw) maxRaw = blocks[i].raw;
    rawTotal += blocks[i].raw;
  }
  char *dst = malloc(maxRaw + 64);

  // Check once, warm up, then time whole rounds.
  for (uint32_t i = 0; i < count; i++) {
    int n = LZ4_decompress_safe(blocks[i].data, dst, (int)blocks[i].comp, (int)blocks[i].raw);
    if (n != (int)blocks[i].raw) {
      fprintf(stderr, "block %u: LZ4_decompress_safe returned %d, expected %u\n", i, n, blocks[i].raw);
      return 1;
    }
  }
  volatile int sink = 0;
  double t0 = now();
  while (now() - t0 < seconds * 0.2)
    for (uint32_t i = 0; i < count; i++) sink += LZ4_decompress_safe(blocks[i].data, dst, (int)blocks[i].comp, (int)blocks[i].raw);

  uint64_t bytes = 0;
  double start = now(), elapsed;
  do {
    for (uint32_t i = 0; i < count; i++) sink += LZ4_decompress_safe(blocks[i].data, dst, (int)blocks[i].comp, (int)blocks[i].raw);
    bytes += rawTotal;
    elapsed = now() - start;
  } while (elapsed < seconds);

  printf("{\"gibs\":%.4f,\"bytes\":%llu,\"seconds\":%.4f,\"blocks\":%u}\n", bytes / elapsed / (1024.0 * 1024 * 1024),
         (unsigned long long)bytes, elapsed, count);
  free(dst);
  free(blocks);
  free(file);
  return 0;
}
