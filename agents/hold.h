/*
 * hold.h - C objects on their way into a Lua state.
 *
 * Handing a C object (a message, a channel reference, a buffer) to Lua
 * takes Lua allocations, and any of them can raise: the agent's memory
 * limit, or a finalizer run by the collector step an allocation triggers.
 * A raise unwinds past the C code that would have freed the object or
 * given it to a userdata with a finalizer.  So the object is *held* first
 * (hold_push), and let go (hold_pop) once Lua owns it or the C code has
 * freed it itself.  What a raise leaves held is released later, when the
 * thread ends the agent's poll (hold_release_all), or sooner when the
 * holds pile up.  Holds are per thread: an agent runs on one thread at a
 * time, and every hold is popped or released before its poll ends.
 */
#ifndef MS_AGENTS_HOLD_H
#define MS_AGENTS_HOLD_H

/* Holds p, to be released by release(p) if it is not popped. */
void hold_push(void *p, void (*release)(void *));
/* Lets go of the most recent hold of p without releasing it. */
void hold_pop(void *p);
/* Releases whatever this thread still holds (a raise left it). */
void hold_release_all(void);

#endif
