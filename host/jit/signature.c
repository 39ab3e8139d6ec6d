/*
** jit/signature.c: kernel signatures ("ptr float* y, int n"): parsed into typed parameters that
** the launcher checks Lua arguments against (host/jit/jit.h).
*/
#include <stdio.h>             /* defines: snprintf */
#include <string.h>            /* defines: strlen, memcpy, strncmp */

#include "jit/jit.h"           /* defines: the API implemented here */

/* ------------------------------------------------------------------------------------------
** signatures */

typedef struct type_row { const char *name; sr_jit_argkind kind; int dtype; } type_row;

/* pointer element types; -1 = void (any dtype) */
static const type_row ptr_types[] = {
  {"float", SR_ARG_PTR, SR_F32}, {"f32", SR_ARG_PTR, SR_F32}, {"double", SR_ARG_PTR, SR_F64},
  {"f64", SR_ARG_PTR, SR_F64}, {"bf16", SR_ARG_PTR, SR_BF16}, {"__nv_bfloat16", SR_ARG_PTR, SR_BF16},
  {"nv_bfloat16", SR_ARG_PTR, SR_BF16}, {"int", SR_ARG_PTR, SR_I32}, {"int32_t", SR_ARG_PTR, SR_I32},
  {"i32", SR_ARG_PTR, SR_I32}, {"fp8_e4m3", SR_ARG_PTR, SR_F8E4M3}, {"__nv_fp8_e4m3", SR_ARG_PTR, SR_F8E4M3},
  {"fp8_e5m2", SR_ARG_PTR, SR_F8E5M2}, {"__nv_fp8_e5m2", SR_ARG_PTR, SR_F8E5M2}, {"void", SR_ARG_PTR, -1},
  {NULL, 0, 0}
};
static const type_row scalar_types[] = {
  {"int", SR_ARG_I32, 0}, {"int32_t", SR_ARG_I32, 0}, {"unsigned", SR_ARG_U32, 0},
  {"unsigned int", SR_ARG_U32, 0}, {"uint32_t", SR_ARG_U32, 0}, {"int64_t", SR_ARG_I64, 0},
  {"long long", SR_ARG_I64, 0}, {"long", SR_ARG_I64, 0}, {"uint64_t", SR_ARG_U64, 0},
  {"size_t", SR_ARG_U64, 0}, {"unsigned long long", SR_ARG_U64, 0}, {"float", SR_ARG_F32, 0},
  {"double", SR_ARG_F64, 0}, {NULL, 0, 0}
};

static int is_ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* one parameter: "[ptr] [const] TYPE [const] [*] [__restrict__] [NAME]" */
static const char *parse_param(const char *s, size_t len, sr_jit_param *p, int index) {
  static _Thread_local char err[256];
  while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\n')) { s++; len--; }
  while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n')) len--;
  char words[8][64];
  int nw = 0, star = 0;
  for (size_t i = 0; i < len; ) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n') { i++; continue; }
    if (c == '*') { star++; i++; continue; }
    if (!is_ident_char(c)) {
      snprintf(err, sizeof err, "parameter %d ('%.*s'): unexpected '%c'", index, (int)len, s, c);
      return err;
    }
    size_t j = i;
    while (j < len && is_ident_char(s[j])) j++;
    if (nw == 8 || j - i >= 64) {
      snprintf(err, sizeof err, "parameter %d ('%.*s'): too long", index, (int)len, s);
      return err;
    }
    snprintf(words[nw++], 64, "%.*s", (int)(j - i), s + i);
    i = j;
  }
  memset(p, 0, sizeof *p);
  int is_ptr = star > 0, w0 = 0;
  if (nw > 0 && !strcmp(words[0], "ptr")) { is_ptr = 1; w0 = 1; }
  /* drop qualifiers, remember const */
  char kept[8][64];
  int nk = 0;
  for (int i = w0; i < nw; i++) {
    if (!strcmp(words[i], "const")) { p->is_const = 1; continue; }
    if (!strcmp(words[i], "__restrict__") || !strcmp(words[i], "restrict") || !strcmp(words[i], "volatile")) continue;
    memcpy(kept[nk++], words[i], 64);
  }
  if (nk == 0) {
    snprintf(err, sizeof err, "parameter %d ('%.*s'): no type", index, (int)len, s);
    return err;
  }
  if (star > 1) {
    snprintf(err, sizeof err, "parameter %d ('%.*s'): pointers to pointers are not supported", index, (int)len, s);
    return err;
  }
  /* the longest known type made of the leading words; what follows (one word) is the name */
  const type_row *rows = is_ptr ? ptr_types : scalar_types;
  int best = 0;
  const type_row *hit = NULL;
  for (int take = nk < 3 ? nk : 3; take >= 1 && !hit; take--) {
    char t[200] = "";
    for (int i = 0; i < take; i++) {
      if (i) strcat(t, " ");
      strcat(t, kept[i]);
    }
    for (const type_row *r = rows; r->name; r++)
      if (!strcmp(r->name, t)) { hit = r; best = take; break; }
  }
  if (!hit) {
    snprintf(err, sizeof err, "parameter %d ('%.*s'): unknown %s type '%s' (%s)", index, (int)len, s,
             is_ptr ? "pointer element" : "scalar", kept[0],
             is_ptr ? "float, double, bf16, int, fp8_e4m3, fp8_e5m2 or void"
                    : "int, unsigned, int64_t, uint64_t, size_t, float or double; tensors are 'ptr TYPE*'");
    return err;
  }
  if (nk - best > 1) {
    snprintf(err, sizeof err, "parameter %d ('%.*s'): cannot read '%s'", index, (int)len, s, kept[best]);
    return err;
  }
  p->kind = hit->kind;
  p->dtype = is_ptr ? hit->dtype : 0;
  if (!is_ptr) p->is_const = 0;
  snprintf(p->ctype, sizeof p->ctype, "%s%s%s", is_ptr && p->is_const ? "const " : "", hit->name, is_ptr ? "*" : "");
  if (nk - best == 1) snprintf(p->name, sizeof p->name, "%s", kept[best]);
  return NULL;
}

const char *sr_jit_parse_sig(const char *text, sr_jit_sig *sig) {
  static _Thread_local char err[320];
  memset(sig, 0, sizeof *sig);
  const char *s = text;
  while (*s == ' ' || *s == '\t') s++;
  if (*s == '\0') return NULL;  /* no parameters */
  int index = 1;
  for (;;) {
    const char *comma = strchr(s, ',');
    size_t len = comma ? (size_t)(comma - s) : strlen(s);
    if (sig->nparams == SR_JIT_MAXARG) {
      snprintf(err, sizeof err, "more than %d parameters", SR_JIT_MAXARG);
      return err;
    }
    const char *e = parse_param(s, len, &sig->p[sig->nparams], index);
    if (e) { snprintf(err, sizeof err, "%s", e); return err; }
    for (int i = 0; i < sig->nparams; i++)
      if (sig->p[sig->nparams].name[0] && !strcmp(sig->p[i].name, sig->p[sig->nparams].name)) {
        snprintf(err, sizeof err, "parameter %d: the name '%s' is used twice", index, sig->p[i].name);
        return err;
      }
    sig->nparams++;
    index++;
    if (!comma) break;
    s = comma + 1;
  }
  return NULL;
}

const char *sr_jit_param_label(const sr_jit_sig *sig, int i, char *buf, size_t n) {
  const sr_jit_param *p = &sig->p[i];
  if (p->name[0]) snprintf(buf, n, "args[%d] '%s' (%s%s)", i + 1, p->name, p->kind == SR_ARG_PTR ? "ptr " : "", p->ctype);
  else snprintf(buf, n, "args[%d] (%s%s)", i + 1, p->kind == SR_ARG_PTR ? "ptr " : "", p->ctype);
  return buf;
}

