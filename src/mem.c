/* memcpy, memmove, memcmp and bcmp for the static musl build (see build.rs).
 *
 * musl's x86_64 memcpy copies with `rep movsq` after a byte-wise alignment loop, and its memcmp
 * compares byte by byte. Both are fine for large buffers but slow for the short copies and
 * comparisons Rust code makes all the time (a `provision` run makes about 33,000 memcpy calls,
 * nearly all of them under 256 bytes: string building, path joins, moves of small values).
 * These versions copy and compare with overlapping unaligned 2/4/8/16-byte loads and stores,
 * and leave long copies to `rep movsb` (fast on every x86_64 with ERMS, correct on all).
 *
 * Built with -fno-builtin -fno-tree-loop-distribute-patterns so that the compiler does not turn
 * the loops below back into calls to these very functions. tests/mem.rs checks every routine
 * against a byte-wise reference for all lengths up to 600, all relative alignments and every
 * overlap, through the standard library's slice operations that call them. */
#include <stddef.h>
#include <stdint.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef u64 v16 __attribute__((vector_size(16), aligned(1)));

static inline u64 ld8(const unsigned char *p) { u64 v; __builtin_memcpy(&v, p, 8); return v; }
static inline u32 ld4(const unsigned char *p) { u32 v; __builtin_memcpy(&v, p, 4); return v; }
static inline u16 ld2(const unsigned char *p) { u16 v; __builtin_memcpy(&v, p, 2); return v; }
static inline v16 ld16(const unsigned char *p) { v16 v; __builtin_memcpy(&v, p, 16); return v; }
static inline void st8(unsigned char *p, u64 v) { __builtin_memcpy(p, &v, 8); }
static inline void st4(unsigned char *p, u32 v) { __builtin_memcpy(p, &v, 4); }
static inline void st2(unsigned char *p, u16 v) { __builtin_memcpy(p, &v, 2); }
static inline void st16(unsigned char *p, v16 v) { __builtin_memcpy(p, &v, 16); }

/* Copies n <= 32 bytes. Everything is loaded before anything is stored, so the two ranges may
 * overlap in any way. */
static inline void copy_small(unsigned char *d, const unsigned char *s, size_t n)
{
	if (n >= 16) {
		v16 a = ld16(s), b = ld16(s + n - 16);
		st16(d, a);
		st16(d + n - 16, b);
	} else if (n >= 8) {
		u64 a = ld8(s), b = ld8(s + n - 8);
		st8(d, a);
		st8(d + n - 8, b);
	} else if (n >= 4) {
		u32 a = ld4(s), b = ld4(s + n - 4);
		st4(d, a);
		st4(d + n - 4, b);
	} else if (n >= 2) {
		u16 a = ld2(s), b = ld2(s + n - 2);
		st2(d, a);
		st2(d + n - 2, b);
	} else if (n) {
		*d = *s;
	}
}

/* Copies n bytes forwards in 16-byte blocks, then the rest (up to 32 bytes, loaded before
 * stored). Correct whenever the destination does not start inside the source: each store only
 * overwrites bytes already read. */
static inline void copy_forward(unsigned char *d, const unsigned char *s, size_t n)
{
	while (n > 32) {
		st16(d, ld16(s));
		d += 16;
		s += 16;
		n -= 16;
	}
	copy_small(d, s, n);
}

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (n <= 32)
		copy_small(d, s, n);
	else if (n <= 256)
		copy_forward(d, s, n);
	else
		__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (n <= 32) {
		copy_small(d, s, n);
		return dst;
	}
	if ((uintptr_t)d - (uintptr_t)s >= n) {
		/* The destination does not start inside the source. */
		copy_forward(d, s, n);
		return dst;
	}
	/* The destination starts inside the source: copy backwards. */
	while (n > 32) {
		n -= 16;
		st16(d + n, ld16(s + n));
	}
	copy_small(d, s, n);
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *l = a, *r = b;
	while (n >= 8) {
		u64 x = ld8(l), y = ld8(r);
		if (x != y) {
			/* The first differing byte decides: compare as big-endian numbers. */
			x = __builtin_bswap64(x);
			y = __builtin_bswap64(y);
			return x < y ? -1 : 1;
		}
		l += 8;
		r += 8;
		n -= 8;
	}
	for (; n; n--, l++, r++)
		if (*l != *r)
			return *l - *r;
	return 0;
}

int bcmp(const void *a, const void *b, size_t n)
{
	return memcmp(a, b, n);
}
