/*
 * LD_PRELOAD shim for BarnOwl's AIM support on GLib >= 2.64.
 *
 * BarnOwl's AIM event source adds a GPollFD with g_source_add_poll() and only
 * then sets its fd (and changes it as connections come and go). GLib keeps a
 * context's poll records sorted by fd at insertion time and asserts that
 * order in g_main_context_check(), so BarnOwl aborts once it has two AIM
 * connections in the "wrong" order. This shim wraps the prepare function of
 * every source BarnOwl creates: after the source's own prepare (which sets
 * the fds), its poll fds are removed and added again, so GLib inserts each at
 * the place its current fd belongs. Prepare runs before GLib builds the poll
 * array, so the change is seen in the same iteration.
 *
 * GLib's headers are not needed: only the public layout of GPollFD, of
 * GSourceFuncs and the first fields of GSource is used.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef int gboolean;
typedef struct {
	int fd;
	unsigned short events;
	unsigned short revents;
} GPollFD;
typedef struct GSource GSource;
typedef struct {
	gboolean (*prepare)(GSource *, int *);
	gboolean (*check)(GSource *);
	gboolean (*dispatch)(GSource *, void *, void *);
	void (*finalize)(GSource *);
	void *closure_callback;
	void *closure_marshal;
} GSourceFuncs;
struct GSource {
	void *callback_data;
	void *callback_funcs;
	const GSourceFuncs *source_funcs;
};

#define MAX_POLLS 256
#define MAX_FUNCS 64

static struct {
	GSource *source;
	GPollFD *fd;
	/* The fd value GLib sorted this record by. */
	int sorted_as;
} polls[MAX_POLLS];

static struct {
	const GSourceFuncs *original;
	GSourceFuncs wrapped;
} funcs[MAX_FUNCS];
static int n_funcs;

static void (*real_add_poll)(GSource *, GPollFD *);
static void (*real_remove_poll)(GSource *, GPollFD *);
static GSource *(*real_source_new)(GSourceFuncs *, unsigned int);

static void load(void)
{
	if (!real_add_poll) {
		real_add_poll = dlsym(RTLD_NEXT, "g_source_add_poll");
		real_remove_poll = dlsym(RTLD_NEXT, "g_source_remove_poll");
		real_source_new = dlsym(RTLD_NEXT, "g_source_new");
	}
}

void g_source_add_poll(GSource *source, GPollFD *fd)
{
	load();
	for (int i = 0; i < MAX_POLLS; i++) {
		if (!polls[i].fd) {
			polls[i].source = source;
			polls[i].fd = fd;
			polls[i].sorted_as = fd->fd;
			break;
		}
	}
	real_add_poll(source, fd);
}

void g_source_remove_poll(GSource *source, GPollFD *fd)
{
	load();
	for (int i = 0; i < MAX_POLLS; i++) {
		if (polls[i].source == source && polls[i].fd == fd) {
			polls[i].source = NULL;
			polls[i].fd = NULL;
		}
	}
	real_remove_poll(source, fd);
}

static const GSourceFuncs *original_of(GSource *source)
{
	for (int i = 0; i < n_funcs; i++) {
		if (source->source_funcs == &funcs[i].wrapped)
			return funcs[i].original;
	}
	return NULL;
}

static gboolean sorted_prepare(GSource *source, int *timeout)
{
	const GSourceFuncs *original = original_of(source);
	gboolean ready = 0;
	*timeout = -1;
	int moved = 0;
	if (original && original->prepare)
		ready = original->prepare(source, timeout);
	/* Re-adding wakes the main loop up, so only when an fd changed. */
	for (int i = 0; i < MAX_POLLS; i++) {
		if (polls[i].source == source && polls[i].fd->fd != polls[i].sorted_as)
			moved = 1;
	}
	for (int i = 0; moved && i < MAX_POLLS; i++) {
		if (polls[i].source == source) {
			real_remove_poll(source, polls[i].fd);
			real_add_poll(source, polls[i].fd);
			polls[i].sorted_as = polls[i].fd->fd;
		}
	}
	return ready;
}

GSource *g_source_new(GSourceFuncs *source_funcs, unsigned int struct_size)
{
	load();
	for (int i = 0; i < n_funcs; i++) {
		if (funcs[i].original == source_funcs)
			return real_source_new(&funcs[i].wrapped, struct_size);
	}
	if (n_funcs == MAX_FUNCS)
		return real_source_new(source_funcs, struct_size);
	funcs[n_funcs].original = source_funcs;
	funcs[n_funcs].wrapped = *source_funcs;
	funcs[n_funcs].wrapped.prepare = sorted_prepare;
	return real_source_new(&funcs[n_funcs++].wrapped, struct_size);
}
