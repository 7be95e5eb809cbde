#define _GNU_SOURCE
#include "links.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

/* A flat list: hard links are rare, and every operation is linear in them. */
struct link_name {
	ino_t ino;
	char *path;
	struct link_name *next;
};

struct links {
	pthread_mutex_t lock;
	struct link_name *head; /* under lock */
};

struct links *links_new(void)
{
	struct links *l = calloc(1, sizeof(*l));
	if (l)
		pthread_mutex_init(&l->lock, NULL);
	return l;
}

void links_free(struct links *l)
{
	if (!l)
		return;
	while (l->head) {
		struct link_name *n = l->head->next;
		free(l->head->path);
		free(l->head);
		l->head = n;
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
}

int links_add(struct links *l, ino_t ino, const char *path)
{
	int r = 0;
	pthread_mutex_lock(&l->lock);
	for (struct link_name *n = l->head; n; n = n->next)
		if (strcmp(n->path, path) == 0) {
			n->ino = ino;
			goto out;
		}
	struct link_name *n = calloc(1, sizeof(*n));
	if (!n || !(n->path = strdup(path))) {
		free(n);
		r = -ENOMEM;
		goto out;
	}
	n->ino = ino;
	n->next = l->head;
	l->head = n;
out:
	pthread_mutex_unlock(&l->lock);
	return r;
}

void links_renamed(struct links *l, const char *from, const char *to, int exchange)
{
	pthread_mutex_lock(&l->lock);
	for (struct link_name *n = l->head; n; n = n->next) {
		char *np = path_rebase(n->path, from, to);
		if (!np && exchange)
			np = path_rebase(n->path, to, from);
		if (np) {
			free(n->path);
			n->path = np;
		}
	}
	pthread_mutex_unlock(&l->lock);
}

void links_unlinked(struct links *l, const char *path)
{
	pthread_mutex_lock(&l->lock);
	for (struct link_name **pp = &l->head; *pp;) {
		struct link_name *n = *pp;
		if (path_is_under(n->path, path)) {
			*pp = n->next;
			free(n->path);
			free(n);
		} else {
			pp = &n->next;
		}
	}
	pthread_mutex_unlock(&l->lock);
}

char **links_others(struct links *l, ino_t ino, const char *path)
{
	size_t cnt = 0, i = 0;
	char **v = NULL;
	pthread_mutex_lock(&l->lock);
	for (struct link_name *n = l->head; n; n = n->next)
		if (n->ino == ino && strcmp(n->path, path) != 0)
			cnt++;
	if (cnt == 0 || !(v = calloc(cnt + 1, sizeof(*v))))
		goto out;
	for (struct link_name *n = l->head; n; n = n->next)
		if (n->ino == ino && strcmp(n->path, path) != 0)
			if ((v[i] = strdup(n->path)))
				i++;
out:
	pthread_mutex_unlock(&l->lock);
	return v;
}

void links_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}
