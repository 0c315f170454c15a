/* lua_http.h: spacer.http, the scripts' outbound HTTP(S) client, and the per-worker state it
 * keeps (name resolver, TLS context). */
#ifndef SP_LUA_HTTP_H
#define SP_LUA_HTTP_H

#include <lua.h>

#include "sp.h"

struct sp_httpc;
struct sp_host;

/* Sets spacer.http on the table at the top of the stack (the spacer module). */
void sp_lua_open_http(lua_State *L);

/* Makes w->httpc now (resolver, TLS context with its CA bundle read) so that the first call
 * does not read files on the loop. Without it the first call makes it. 0 or -1 with err. */
int sp_httpc_start(struct sp_host *w, sp_err *err);
void sp_httpc_free(struct sp_httpc *hc); /* NULL is fine; no call may be in flight */

#endif
