/* timer.h: spacer.timer — background jobs the scripts declare. Each worker runs a generation's
 * timers while that generation is current, each run in its own coroutine with a request's
 * limits, database and outbound HTTP. */
#ifndef SP_TIMER_H
#define SP_TIMER_H

#include <lua.h>

struct sp_gen;
struct sp_host;

/* Sets spacer.timer on the table at the top of the stack (the spacer module). */
void sp_lua_open_timer(lua_State *L);

/* Arms the generation's timers on w's loop (the generation became w's current one). */
void sp_timer_start(struct sp_host *w, struct sp_gen *gen);
/* No new runs of the generation's timers (replaced, or the worker drains); a run in flight
 * finishes. NULL is fine. */
void sp_timer_stop(struct sp_gen *gen);

#endif
