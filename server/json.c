#include "json.h"

#include <string.h>

int json_append_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;
	int r;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		if ((r = buf_append(b, s + start, i - start)) < 0)
			return r;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			r = buf_append(b, e, 2);
		} else {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			r = buf_append(b, e, 6);
		}
		if (r < 0)
			return r;
		start = i + 1;
	}
	return buf_append(b, s + start, n - start);
}

int json_append_qstr(struct buf *b, const char *s)
{
	int r;
	if ((r = buf_append(b, "\"", 1)) < 0 || (r = json_append_str(b, s, strlen(s))) < 0)
		return r;
	return buf_append(b, "\"", 1);
}
