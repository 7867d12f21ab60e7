/* payload.c - topics and JSON payloads. */
#include "payload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int payload_topic(const char *prefix, const sample *s, char *buf, size_t n)
{
    int r = *s->tag ? snprintf(buf, n, "%s/%s/%s", prefix, s->dev, s->tag)
                    : snprintf(buf, n, "%s/%s", prefix, s->dev);
    return r < 0 || (size_t)r >= n ? -1 : r;
}

int payload_string(const char *s, char *buf, size_t n)
{
    size_t o = 0;
    if (n < 3)
        return -1;
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        const char *add = esc;
        size_t len;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            len = 2;
        } else if (*p < 0x20) {
            len = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
        } else {
            add = (const char *)p;
            len = 1;
        }
        if (o + len + 2 > n)
            return -1;
        memcpy(buf + o, add, len);
        o += len;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return (int)o;
}

static int fit(int r, size_t n) { return r < 0 || (size_t)r >= n ? -1 : r; }

int payload_sample(const sample *s, char *buf, size_t n)
{
    const char *hist = s->hist ? ",\"hist\":true" : "";
    if (!*s->tag)
        return fit(snprintf(buf, n, "{\"ts\":%lld,\"values\":%s%s}", (long long)s->ts,
                            s->val ? s->val : "{}", hist), n);
    if (s->good)
        return fit(snprintf(buf, n, "{\"v\":%s,\"ts\":%lld,\"q\":\"good\"%s}", s->val,
                            (long long)s->ts, hist), n);
    char err[512];
    if (payload_string(s->err ? s->err : "error", err, sizeof err) < 0)
        snprintf(err, sizeof err, "\"error\"");
    return fit(snprintf(buf, n, "{\"v\":null,\"ts\":%lld,\"q\":\"bad\",\"error\":%s%s}",
                        (long long)s->ts, err, hist), n);
}

int payload_device_state(bool up, int64_t ts, const char *error, char *buf, size_t n)
{
    char err[512];
    if (up || !error || !*error)
        return fit(snprintf(buf, n, "{\"state\":\"%s\",\"ts\":%lld}", up ? "up" : "down",
                            (long long)ts), n);
    if (payload_string(error, err, sizeof err) < 0)
        snprintf(err, sizeof err, "\"error\"");
    return fit(snprintf(buf, n, "{\"state\":\"down\",\"ts\":%lld,\"error\":%s}",
                        (long long)ts, err), n);
}

void payload_json_text(const json_t *v, char *buf, size_t n)
{
    codec_value cv = { .kind = CV_NONE };
    if (json_is_integer(v)) {
        cv.kind = CV_INT;
        cv.i = json_integer_value(v);
    } else if (json_is_real(v)) {
        cv.kind = CV_F64;
        cv.f64 = json_real_value(v);
    }
    if (cv.kind != CV_NONE && codec_format(&cv, buf, n) >= 0)
        return;
    char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    snprintf(buf, n, "%s", s ? s : "null");
    free(s);
}

/* Length of the valid UTF-8 sequence at p, or 0 (overlong forms,
 * surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    if (!n || (n == 3 && p[0] >= 0xf0))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

void payload_utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = utf8_len(p);
        if (n) {
            p += n;
        } else {
            *p++ = '?';
        }
    }
}
