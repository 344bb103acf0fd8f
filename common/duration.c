/* duration.c: parse durations and RFC 3339 / epoch times into milliseconds. */
#include "duration.h"

#include <string.h>
#include <time.h>

/* An optional ".F" at *p: *frac is F in milliseconds (digits past the
 * third dropped); advances *p; -1 for a dot without a digit. */
static int
parse_fraction_ms(const char **p, int64_t *frac)
{
	int fdigits = 0;

	*frac = 0;
	if (**p != '.')
		return 0;
	for ((*p)++; **p >= '0' && **p <= '9'; (*p)++, fdigits++)
		if (fdigits < 3)
			*frac = *frac * 10 + (**p - '0');
	for (int i = fdigits; i < 3; i++)
		*frac *= 10;
	return fdigits == 0 ? -1 : 0;
}

/* Digits "I[.F]" at *s: *milli is the value times 1000 (fraction to the
 * millisecond, rounded down); advances *s; -1 when there is no digit. */
static int
parse_decimal_milli(const char **s, int64_t *milli)
{
	const char *p = *s;
	int64_t whole = 0, frac;
	int digits = 0;

	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		if (whole > DURATION_MAX_MS)
			return -1;
		whole = whole * 10 + (*p - '0');
	}
	if (parse_fraction_ms(&p, &frac) < 0)
		return -1;
	if (digits == 0)
		return -1;
	if (whole > DURATION_MAX_MS)
		return -1;
	*milli = whole * 1000 + frac;
	*s = p;
	return 0;
}

int
duration_parse(const char *s, int64_t *ms)
{
	int64_t milli;      /* the number times 1000 */
	int64_t unit = 1000; /* ms per unit: seconds by default */

	if (parse_decimal_milli(&s, &milli) < 0)
		return -1;
	if (strcmp(s, "ms") == 0)
		unit = 1;
	else if (strcmp(s, "s") == 0 || *s == '\0')
		unit = 1000;
	else if (strcmp(s, "m") == 0)
		unit = 60 * 1000;
	else if (strcmp(s, "h") == 0)
		unit = 3600 * 1000;
	else if (strcmp(s, "d") == 0)
		unit = 24 * 3600 * 1000;
	else
		return -1;
	if (milli > DURATION_MAX_MS / unit * 1000 + 999)
		return -1;
	*ms = milli / 1000 * unit + milli % 1000 * unit / 1000;
	if (*ms > DURATION_MAX_MS)
		return -1;
	return 0;
}

/* Exactly n digits at *p into *v; advances *p. */
static int
fixed_digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		*v = *v * 10 + (**p - '0');
	}
	return 0;
}

static int
expect(const char **p, const char *chars)
{
	if (**p == '\0' || !strchr(chars, **p))
		return -1;
	(*p)++;
	return 0;
}

static int
parse_rfc3339(const char *s, int64_t *epoch_ms)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec, off = 0;
	int64_t frac;
	time_t t;

	if (fixed_digits(&s, 4, &y) < 0 || expect(&s, "-") < 0 ||
	    fixed_digits(&s, 2, &mo) < 0 || expect(&s, "-") < 0 ||
	    fixed_digits(&s, 2, &d) < 0 || expect(&s, "Tt ") < 0 ||
	    fixed_digits(&s, 2, &h) < 0 || expect(&s, ":") < 0 ||
	    fixed_digits(&s, 2, &mi) < 0 || expect(&s, ":") < 0 ||
	    fixed_digits(&s, 2, &sec) < 0)
		return -1;
	if (parse_fraction_ms(&s, &frac) < 0)
		return -1;
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int sign = *s++ == '-' ? -1 : 1, oh, om;
		if (fixed_digits(&s, 2, &oh) < 0 || expect(&s, ":") < 0 ||
		    fixed_digits(&s, 2, &om) < 0 || oh > 23 || om > 59)
			return -1;
		off = sign * (oh * 60 + om) * 60;
	} else {
		return -1;
	}
	if (*s != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 ||
	    h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second: one second after :59 */
	t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != d) /* 31 February and the like */
		return -1;
	*epoch_ms = ((int64_t)t - off + (sec == 60)) * 1000 + frac;
	return *epoch_ms < 0 ? -1 : 0;
}

int
time_parse(const char *s, int64_t *epoch_ms)
{
	const char *p = s;
	int64_t milli;

	if (strlen(s) > 40)
		return -1;
	if (strchr(s, '-') || strchr(s, 'T') || strchr(s, ':'))
		return parse_rfc3339(s, epoch_ms);
	if (parse_decimal_milli(&p, &milli) < 0 || *p != '\0')
		return -1;
	*epoch_ms = milli;
	return 0;
}
