/* id.c: validation of ids and names, and UUIDv7 generation. */
#include "id.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"

static int
in_set(const char *s, size_t n, const char *extra)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9'))
			continue;
		if (c == '\0' || !strchr(extra, c))
			return 0;
	}
	return 1;
}

int
id_valid(const char *s, size_t n)
{
	return n >= 1 && n <= ID_MAX && in_set(s, n, "._:@/-");
}

int
queue_valid(const char *s)
{
	size_t n = strnlen(s, QUEUE_MAX + 1);

	return n >= 1 && n <= QUEUE_MAX && in_set(s, n, "._-");
}

int
prefix_valid(const char *s)
{
	size_t n = strnlen(s, PREFIX_MAX + 1);

	return n >= 1 && n <= PREFIX_MAX && in_set(s, n, "._:-");
}

/* Random bytes, drawn from the kernel a few KiB at a time. */
static int
random_bytes(unsigned char *out, size_t n)
{
	static unsigned char pool[4096];
	static size_t filled, used; /* pool[used..filled) is fresh */

	while (n > 0) {
		size_t take;
		if (used == filled) {
			ssize_t got = getrandom(pool, sizeof pool, 0);
			if (got <= 0)
				return -1;
			filled = (size_t)got;
			used = 0;
		}
		take = n < filled - used ? n : filled - used;
		memcpy(out, pool + used, take);
		used += take;
		out += take;
		n -= take;
	}
	return 0;
}

/*
 * RFC 9562 method 1: the 12 bits of rand_a are a counter within one
 * millisecond, started at a random value below 2048 so it has room to grow;
 * when it runs out the timestamp is moved on by one millisecond.
 */
int
uuidv7(char out[UUID_LEN + 1])
{
	static uint64_t last_ms;
	static unsigned counter;
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	uint64_t ms = (uint64_t)clock_epoch_ms();

	if (random_bytes(b, sizeof b) < 0)
		return -1;
	if (ms > last_ms) {
		last_ms = ms;
		counter = (unsigned)(b[6] << 8 | b[7]) & 0x7ff;
	} else if (++counter > 0xfff) {
		last_ms++;
		counter = (unsigned)(b[6] << 8 | b[7]) & 0x7ff;
	}
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(last_ms >> (40 - 8 * i));
	b[6] = (unsigned char)(0x70 | (counter >> 8));
	b[7] = (unsigned char)counter;
	b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
	for (int i = 0, o = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[UUID_LEN] = '\0';
	return 0;
}
