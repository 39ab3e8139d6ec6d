/*
** lua/lhttp.c: the Lua module speedrun.http: one blocking HTTP request with retries (libcurl's easy
** interface; host-only: score-mode recipes cannot require it).
**   request{method=, url=, headers={Name = value}, body=, timeout=, connect_timeout=, retries=,
**           backoff=, max_wait=}
**     -> {status, headers = {lowercase-name = value}, body, attempts, latency_s}
**     -> nil, err, info   (info: {attempts, latency_s [, status, headers, body]})
** method defaults to GET (POST when there is a body); timeout (one attempt, whole transfer, default
** 120 s) and connect_timeout (default 10 s) are seconds. 429, 5xx and connection errors/timeouts are
** retried up to `retries` times (default 3), waiting Retry-After when the server gives one, else
** backoff * 2^(k-1) seconds (backoff default 1), each wait capped at max_wait (default 60). Other
** statuses >= 400 fail at once. Errors read "http: METHOD URL: what" with the status and a body
** excerpt (<= 300 bytes). Proxies come from the environment (libcurl's own handling).
** Every handle and buffer lives in a userdata with a __gc, so a Lua error anywhere frees them.
*/
#include <stdlib.h>        /* defines: malloc, realloc, free */
#include <string.h>        /* defines: memcpy, strncmp */
#include <time.h>          /* defines: nanosleep */
#include <ctype.h>         /* defines: tolower, isspace */
#include <strings.h>       /* defines: strcasecmp */

#include <curl/curl.h>     /* defines: curl_easy_*, curl_slist_* */
#include <lua.h>
#include <lauxlib.h>

#include "lua/lsr.h"       /* defines: sr_argerror, luaopen_speedrun_http */
#include "util/clock.h"    /* defines: sr_monotonic_s */

#define HTTP_REQ_MT "speedrun.http.Request"
#define EXCERPT_MAX 300

typedef struct buf { char *p; size_t n, cap; int oom; } buf;

/* one request's resources: freed by req_free (at the end of request, or by __gc after an error) */
typedef struct http_req {
  CURL *easy;
  struct curl_slist *headers;
  buf body, head;
  int global;                      /* curl_global_init done, cleanup owed */
  char errbuf[CURL_ERROR_SIZE];
} http_req;

typedef struct req_opts {
  const char *method, *url, *body;
  size_t body_len;
  int has_body;
  double timeout, connect_timeout, backoff, max_wait;
  lua_Integer retries;
} req_opts;

static int buf_add(buf *b, const char *p, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) { b->oom = 1; return 0; }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = '\0';
  return 1;
}

static void req_free(http_req *r) {
  if (r->easy) curl_easy_cleanup(r->easy);
  if (r->headers) curl_slist_free_all(r->headers);
  if (r->global) curl_global_cleanup();
  free(r->body.p);
  free(r->head.p);
  memset(r, 0, sizeof *r);
}

static int req_gc(lua_State *L) {
  req_free(luaL_checkudata(L, 1, HTTP_REQ_MT));
  return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  return buf_add(ud, p, size * nmemb) ? size * nmemb : 0;
}

/* header lines of the last response only (a redirect or 100 Continue starts a new block) */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  buf *b = ud;
  size_t n = size * nmemb;
  if (n >= 5 && !strncmp(p, "HTTP/", 5)) b->n = 0;
  return buf_add(b, p, n) ? n : 0;
}

/* ---- arguments ---- */

static double opt_seconds(lua_State *L, const char *field, double def, double min) {
  lua_getfield(L, 1, field);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1)) sr_argerror(L, 1, "field '%s' must be a number, got %s", field, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
    if (!(v >= min) || v > 1e7) sr_argerror(L, 1, "field '%s' must be in [%f, 1e7], got %f", field, min, v);
  }
  lua_pop(L, 1);
  return v;
}

static const char *opt_string(lua_State *L, const char *field, size_t *len) {
  lua_getfield(L, 1, field);
  const char *s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  else if (!lua_isnil(L, -1)) sr_argerror(L, 1, "field '%s' must be a string, got %s", field, luaL_typename(L, -1));
  lua_pop(L, 1);   /* still referenced by the argument table, which stays on the stack */
  return s;
}

static void check_opts(lua_State *L, req_opts *o) {
  luaL_checktype(L, 1, LUA_TTABLE);
  o->url = opt_string(L, "url", NULL);
  if (!o->url || !*o->url) sr_argerror(L, 1, "field 'url' must be a non-empty string");
  o->body = opt_string(L, "body", &o->body_len);
  o->has_body = o->body != NULL;
  o->method = opt_string(L, "method", NULL);
  if (!o->method) o->method = o->has_body ? "POST" : "GET";
  for (const char *c = o->method; *c; c++)
    if (!isupper((unsigned char)*c)) sr_argerror(L, 1, "field 'method' must be an upper-case HTTP method, got '%s'", o->method);
  if (!*o->method) sr_argerror(L, 1, "field 'method' is empty");
  o->timeout = opt_seconds(L, "timeout", 120, 0.001);
  o->connect_timeout = opt_seconds(L, "connect_timeout", 10, 0.001);
  o->backoff = opt_seconds(L, "backoff", 1, 0);
  o->max_wait = opt_seconds(L, "max_wait", 60, 0);
  double retries = opt_seconds(L, "retries", 3, 0);
  if (retries != (lua_Integer)retries || retries > 100) sr_argerror(L, 1, "field 'retries' must be an integer in [0, 100]");
  o->retries = (lua_Integer)retries;
}

static void add_header(lua_State *L, http_req *r, const char *line) {
  struct curl_slist *s = curl_slist_append(r->headers, line);
  if (!s) luaL_error(L, "http: out of memory");
  r->headers = s;
}

/* the headers table -> "Name: value" lines; a user Content-Type wins over ours; no Expect: 100-continue */
static void build_headers(lua_State *L, http_req *r, const req_opts *o) {
  int has_ct = 0;
  lua_getfield(L, 1, "headers");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1))
    sr_argerror(L, 1, "field 'headers' must be a table, got %s", luaL_typename(L, -1));
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        sr_argerror(L, 1, "field 'headers' must map names to strings");
      const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
      if (strpbrk(k, ":\r\n") || strpbrk(v, "\r\n")) sr_argerror(L, 1, "header '%s' has a bad character", k);
      has_ct |= !strcasecmp(k, "Content-Type");
      const char *line = *v ? lua_pushfstring(L, "%s: %s", k, v) : lua_pushfstring(L, "%s;", k);
      add_header(L, r, line);
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
  if (o->has_body && !has_ct) add_header(L, r, "Content-Type: application/octet-stream");
  add_header(L, r, "Expect:");
}

/* ---- one attempt ---- */

static void setup_easy(http_req *r, const req_opts *o) {
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &r->head);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(e, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "speedrun/" SPEEDRUN_VERSION " libcurl");
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(o->timeout * 1000 + 0.5));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout * 1000 + 0.5));
  if (o->has_body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
  }
  if (!strcmp(o->method, "HEAD")) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(o->method, o->has_body ? "POST" : "GET")) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
}

/* transient failures: the network, the server's timeout or load */
static int retriable_curl(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT: case CURLE_GOT_NOTHING: case CURLE_SEND_ERROR: case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE: case CURLE_SSL_CONNECT_ERROR: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
      return 1;
    default:
      return 0;
  }
}

static int retriable_status(long st) { return st == 429 || (st >= 500 && st <= 599); }

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&t, &t) != 0) {}
}

/* the wait before retry k (1-based): the server's Retry-After, else backoff doubling; capped */
static double retry_wait(http_req *r, const req_opts *o, int k) {
  curl_off_t ra = -1;
  double w = o->backoff;
  for (int i = 1; i < k && w < o->max_wait; i++) w *= 2;
  if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) w = (double)ra;
  return w < o->max_wait ? w : o->max_wait;
}

/* ---- results ---- */

static void push_headers(lua_State *L, const buf *h) {
  lua_newtable(L);
  const char *p = h->p ? h->p : "", *end = p + h->n;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon && strncmp(p, "HTTP/", 5)) {
      luaL_Buffer name;
      luaL_buffinit(L, &name);
      for (const char *c = p; c < colon; c++) luaL_addchar(&name, (char)tolower((unsigned char)*c));
      luaL_pushresult(&name);
      const char *v = colon + 1, *ve = eol;
      while (v < ve && isspace((unsigned char)*v)) v++;
      while (ve > v && isspace((unsigned char)ve[-1])) ve--;
      if (lua_getfield(L, -2, lua_tostring(L, -1)) == LUA_TSTRING) {   /* repeated: joined with ", " */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_settable(L, -3);
    }
    p = eol + 1;
  }
}

static void push_response(lua_State *L, http_req *r, long status, int attempts, double t0) {
  lua_createtable(L, 0, 5);
  if (status) {
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    push_headers(L, &r->head);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.n);
    lua_setfield(L, -2, "body");
  }
  lua_pushinteger(L, attempts);
  lua_setfield(L, -2, "attempts");
  lua_pushnumber(L, sr_monotonic_s() - t0);
  lua_setfield(L, -2, "latency_s");
}

/* pushes the body's first EXCERPT_MAX bytes, control characters as spaces */
static void push_excerpt(lua_State *L, const buf *b) {
  luaL_Buffer x;
  luaL_buffinit(L, &x);
  size_t n = b->n < EXCERPT_MAX ? b->n : EXCERPT_MAX - 3;
  for (size_t i = 0; i < n; i++) luaL_addchar(&x, iscntrl((unsigned char)b->p[i]) ? ' ' : b->p[i]);
  if (n < b->n) luaL_addstring(&x, "...");
  luaL_pushresult(&x);
}

/* nil, "http: METHOD URL: what [(N attempts)][: body excerpt]", info */
static int push_failure(lua_State *L, http_req *r, const req_opts *o, CURLcode c, long st, int attempts, double t0) {
  lua_pushnil(L);
  if (c != CURLE_OK)
    lua_pushfstring(L, "http: %s %s: %s", o->method, o->url, r->errbuf[0] ? r->errbuf : curl_easy_strerror(c));
  else
    lua_pushfstring(L, "http: %s %s: HTTP %d", o->method, o->url, (int)st);
  if (attempts > 1) {
    lua_pushfstring(L, " (gave up after %d attempts)", attempts);
    lua_concat(L, 2);
  }
  if (c == CURLE_OK) {
    lua_pushstring(L, r->body.n ? ": " : " (empty body)");
    push_excerpt(L, &r->body);
    lua_concat(L, 3);
  }
  push_response(L, r, c == CURLE_OK ? st : 0, attempts, t0);
  return 3;
}

static int h_request(lua_State *L) {
  req_opts o;
  check_opts(L, &o);
  http_req *r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, HTTP_REQ_MT);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return luaL_error(L, "http: libcurl failed to initialise");
  r->global = 1;
  build_headers(L, r, &o);
  double t0 = sr_monotonic_s();
  CURLcode c;
  long st = 0;
  int attempts = 0;
  for (;;) {
    if (!r->easy && !(r->easy = curl_easy_init())) return luaL_error(L, "http: curl_easy_init failed");
    setup_easy(r, &o);
    r->body.n = r->head.n = 0;
    r->errbuf[0] = '\0';
    c = curl_easy_perform(r->easy);
    attempts++;
    if (r->body.oom || r->head.oom) return luaL_error(L, "http: out of memory reading the response");
    st = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
    int again = c != CURLE_OK ? retriable_curl(c) : retriable_status(st);
    if (!again || attempts > o.retries) break;
    sleep_s(retry_wait(r, &o, attempts));
    curl_easy_reset(r->easy);
  }
  int n = (c != CURLE_OK || st >= 400) ? push_failure(L, r, &o, c, st, attempts, t0)
                                       : (push_response(L, r, st, attempts, t0), 1);
  req_free(r);
  return n;
}

int luaopen_speedrun_http(lua_State *L) {
  static const luaL_Reg mm[] = {{"__gc", req_gc}, {NULL, NULL}};
  if (luaL_newmetatable(L, HTTP_REQ_MT)) luaL_setfuncs(L, mm, 0);
  lua_pop(L, 1);
  static const luaL_Reg f[] = {{"request", h_request}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
