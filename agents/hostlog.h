/*
 * hostlog.h - the lines the host writes to stderr (stalls, agent exits,
 * shutdown reports, warnings), in one of two formats (docs/logs.md):
 *
 *   text  "ms-host: MESSAGE", as a person reads it; under systemd
 *         (JOURNAL_STREAM names our stderr) each line starts with its
 *         syslog priority, "<4>", so the journal records the level;
 *   json  one object per line: time, level, event, agent_id and agent
 *         (when the line is about one), message.
 *
 * Every line is one write(2), so lines from several threads never mix.
 * Callable from any thread, with no Lua state and no lock held by the
 * caller needed: it takes none and allocates only for a line longer than
 * its stack buffer.
 */
#ifndef MS_AGENTS_HOSTLOG_H
#define MS_AGENTS_HOSTLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* syslog's numbers: what the journal's "<N>" prefix carries. */
typedef enum {
    HOSTLOG_ERROR = 3,
    HOSTLOG_WARNING = 4,
    HOSTLOG_NOTICE = 5,
    HOSTLOG_INFO = 6,
} hostlog_level;

typedef enum { HOSTLOG_TEXT, HOSTLOG_JSON } hostlog_format;

/* "text" or "json" (what --log-format takes); false for anything else. */
bool hostlog_parse_format(const char *name, hostlog_format *out);

/* Set once by main before the host starts (the default is text); read
 * by every thread that logs (relaxed atomic: a line written while it
 * changes is whole in one format or the other). */
void hostlog_set_format(hostlog_format f);
hostlog_format hostlog_get_format(void);

/* A level's name ("error", "warning", "notice", "info"), and back: false
 * for a name that is none of them. */
const char *hostlog_level_name(hostlog_level lv);
bool hostlog_parse_level(const char *name, hostlog_level *out);

/* One line (the message may hold newlines: a traceback, a task dump; in
 * text under the journal each of its lines gets the prefix, in json it is
 * one escaped string).  event is a stable dotted name ("agent.exit",
 * "shutdown.start": the table in docs/logs.md); agent_id 0 and agent NULL
 * when the line is about no agent. */
void hostlog(hostlog_level lv, const char *event, uint64_t agent_id, const char *agent,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The same with the message already formatted (what ms.log writes). */
void hostlog_write(hostlog_level lv, const char *event, uint64_t agent_id, const char *agent,
                   const char *message, size_t len);

#endif
