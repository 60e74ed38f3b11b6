/*
 * attach.h - `ms-host attach PATH`: the console's client, a line-editing
 * REPL whose input runs inside another host.
 */
#ifndef MS_HOST_ATTACH_H
#define MS_HOST_ATTACH_H

/* Returns the process's exit status. */
int attach_main(const char *path);

#endif
