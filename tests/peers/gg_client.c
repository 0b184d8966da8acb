/*
 * A Gadu-Gadu user on Debian's libgadu, driven line by line for the
 * end-to-end tests.
 *
 *   gg_client UIN PASSWORD SERVER_IP PORT [PROTOCOL]
 *
 * PROTOCOL is a protocol version number such as 0x2e (GG 8.0); without it
 * libgadu uses its default (GG 11). TLS is off and the hub lookup is skipped.
 *
 * Commands on stdin, one per line:
 *   send UIN TEXT      a message (UTF-8)
 *   typing UIN LENGTH  a typing notification (0: stopped typing)
 *   file UIN PATH      offer a file (DCC7)
 *   ping               a keep-alive; the server's answer prints "pong"
 *
 * Lines on stdout:
 *   connected | msg SENDER TEXT | typing UIN LENGTH | file UIN NAME SIZE |
 *   ack SEQ | pong | failed WHY
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libgadu.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *format, ...)
{
	va_list args;

	va_start(args, format);
	vprintf(format, args);
	va_end(args);
	putchar('\n');
	fflush(stdout);
}

/* Print one event; returns 0 when the session is over. */
static int report(struct gg_event *e)
{
	switch (e->type) {
	case GG_EVENT_MSG:
		say("msg %u %s", e->event.msg.sender,
		    e->event.msg.message ? (char *)e->event.msg.message : "");
		break;
	case GG_EVENT_TYPING_NOTIFICATION:
		say("typing %u %d", e->event.typing_notification.uin,
		    e->event.typing_notification.length);
		break;
	case GG_EVENT_DCC7_NEW:
		say("file %u %s %u", e->event.dcc7_new->peer_uin,
		    (char *)e->event.dcc7_new->filename,
		    e->event.dcc7_new->size);
		break;
	case GG_EVENT_ACK:
		say("ack %d", e->event.ack.seq);
		break;
	case GG_EVENT_ACK110:
		say("ack %u", e->event.ack110.seq);
		break;
	case GG_EVENT_PONG:
	case GG_EVENT_PONG110:
		say("pong");
		break;
	case GG_EVENT_DISCONNECT:
	case GG_EVENT_CONN_FAILED:
		say("failed event %d", e->type);
		return 0;
	default:
		break;
	}
	return 1;
}

/* Run one command line; returns -1 when libgadu refused it. */
static int command(struct gg_session *gs, char *line)
{
	char *verb = strtok(line, " ");
	char *uin_text = strtok(NULL, " ");
	char *rest = strtok(NULL, "");
	uin_t uin = uin_text ? (uin_t)strtoul(uin_text, NULL, 10) : 0;

	if (verb == NULL)
		return 0;
	if (strcmp(verb, "ping") == 0)
		return gg_ping(gs);
	if (uin == 0 || rest == NULL)
		return -1;
	if (strcmp(verb, "send") == 0)
		return gg_send_message(gs, GG_CLASS_CHAT, uin,
				       (unsigned char *)rest) < 0 ? -1 : 0;
	if (strcmp(verb, "typing") == 0)
		return gg_typing_notification(gs, uin, atoi(rest));
	if (strcmp(verb, "file") == 0)
		return gg_dcc7_send_file(gs, uin, rest, NULL, NULL) ? 0 : -1;
	return -1;
}

int main(int argc, char **argv)
{
	struct gg_login_params p;
	struct gg_session *gs;
	struct in_addr server;
	char line[4096];
	size_t used = 0;

	if (argc < 5 || inet_pton(AF_INET, argv[3], &server) != 1) {
		fprintf(stderr, "usage: %s UIN PASSWORD SERVER_IP PORT [PROTOCOL]\n", argv[0]);
		return 2;
	}
	if (getenv("GG_DEBUG"))
		gg_debug_level = ~0;

	memset(&p, 0, sizeof(p));
	p.uin = (uin_t)strtoul(argv[1], NULL, 10);
	p.password = argv[2];
	p.server_addr = server.s_addr;
	p.server_port = (uint16_t)atoi(argv[4]);
	p.protocol_version = argc > 5 ? (int)strtol(argv[5], NULL, 0) : 0;
	p.tls = GG_SSL_DISABLED;
	p.encoding = GG_ENCODING_UTF8;
	p.async = 0;

	gs = gg_login(&p);
	if (gs == NULL) {
		say("failed login: %s", strerror(errno));
		return 1;
	}
	say("connected");

	for (;;) {
		/* libgadu chooses the descriptor and the readiness to wait for:
		 * queued events (such as the GG 8.0-style acks it makes up for
		 * GG 11) come through a socket pair that must be writable. */
		struct pollfd fds[2] = {
			{ .fd = gs->fd, .events =
				((gs->check & GG_CHECK_READ) ? POLLIN : 0) |
				((gs->check & GG_CHECK_WRITE) ? POLLOUT : 0) },
			{ .fd = STDIN_FILENO, .events = POLLIN },
		};

		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			break;
		if (fds[0].revents) {
			struct gg_event *e = gg_watch_fd(gs);
			int go_on;

			if (e == NULL) {
				say("failed connection lost");
				break;
			}
			go_on = report(e);
			gg_event_free(e);
			if (!go_on)
				break;
		}
		if (fds[1].revents) {
			ssize_t n = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
			char *end;

			if (n <= 0)
				break;
			used += (size_t)n;
			line[used] = '\0';
			while ((end = strchr(line, '\n')) != NULL) {
				*end = '\0';
				if (command(gs, line) < 0)
					say("failed command");
				used -= (size_t)(end + 1 - line);
				memmove(line, end + 1, used + 1);
			}
			if (used == sizeof(line) - 1)
				used = 0;
		}
	}
	gg_logoff(gs);
	gg_free_session(gs);
	return 0;
}
