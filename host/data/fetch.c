/*
** data/fetch.c: resumable, retried, parallel downloads with libcurl's multi interface (see fetch.h).
** One job per file moves PENDING -> ACTIVE -> DONE or FAILED; a retry puts it back to PENDING
** with a time before which it may not start.
*/
#include <errno.h>         /* defines: errno */
#include <stdio.h>         /* defines: FILE, fopen, snprintf */
#include <stdlib.h>        /* defines: calloc, free */
#include <string.h>        /* defines: strerror, strlen */
#include <unistd.h>        /* defines: ftruncate, isatty */

#include <curl/curl.h>     /* defines: curl_multi_*, curl_easy_* */

#include "util/clock.h"         /* defines: sr_monotonic_s */
#include "util/fileio.h"        /* defines: sr_mkdir_p, sr_file_size */
#include "data/fetch.h"         /* defines: sr_fetch_opts */
#include "data/shard.h"         /* defines: sr_shard_peek */

enum { J_PENDING, J_ACTIVE, J_DONE, J_FAILED };

typedef struct job {
  const char *name;
  char url[4096], path[4096], part[4200];
  CURL *easy;
  FILE *fp;
  int state, attempts;
  double not_before;          /* monotonic seconds */
  long long offset;           /* bytes in .part when this transfer started */
  long long received;         /* body bytes written by this transfer */
  long long expected;         /* full size when known, else -1 */
  long status;                /* HTTP status of the final response */
  int first_write, discard;
  char curl_error[CURL_ERROR_SIZE];
  char why[8192];             /* the last failure */
} job;

/* the body: error pages are dropped; a 200 to a Range request means start over */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  job *j = ud;
  size_t n = size * nmemb;
  if (j->first_write) {
    j->first_write = 0;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
    j->discard = j->status >= 300;
    if (!j->discard && j->offset > 0 && j->status == 200) {
      if (ftruncate(fileno(j->fp), 0) != 0 || fseek(j->fp, 0, SEEK_SET) != 0) return 0;
      j->offset = 0;
    }
    curl_off_t cl = -1;
    curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (!j->discard && cl >= 0) j->expected = j->offset + (long long)cl;
  }
  if (j->discard) return n;
  if (fwrite(p, 1, n, j->fp) != n) return 0;          /* CURLE_WRITE_ERROR */
  j->received += (long long)n;
  return n;
}

static int start(CURLM *multi, job *j, const sr_fetch_opts *o) {
  long long have = sr_file_size(j->part);
  j->offset = have > 0 ? have : 0;
  j->fp = fopen(j->part, "ab");
  if (!j->fp) {
    snprintf(j->why, sizeof j->why, "%s: cannot open for writing (%s)", j->part, strerror(errno));
    j->state = J_FAILED;
    return -1;
  }
  j->received = 0;
  j->status = 0;
  j->first_write = 1;
  j->discard = 0;
  j->curl_error[0] = '\0';
  CURL *e = j->easy = curl_easy_init();
  if (!e) {
    fclose(j->fp);
    snprintf(j->why, sizeof j->why, "%s: curl_easy_init failed", j->name);
    j->state = J_FAILED;
    return -1;
  }
  curl_easy_setopt(e, CURLOPT_URL, j->url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
  curl_easy_setopt(e, CURLOPT_PRIVATE, j);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->curl_error);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "speedrun/" SPEEDRUN_VERSION " libcurl");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, o->connect_timeout > 0 ? o->connect_timeout : 30L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->stall_seconds > 0 ? o->stall_seconds : 60L);
  char range[64];
  snprintf(range, sizeof range, "%lld-", j->offset);
  if (j->offset > 0) curl_easy_setopt(e, CURLOPT_RANGE, range);   /* a 200 reply is handled in on_body */
  curl_multi_add_handle(multi, e);
  j->state = J_ACTIVE;
  return 0;
}

/* retry later, or give up after o->retries retries */
static void retry(job *j, const sr_fetch_opts *o, double now) {
  int retries = o->retries >= 0 ? o->retries : 5;
  if (j->attempts > retries) {
    j->state = J_FAILED;
    size_t l = strlen(j->why);
    snprintf(j->why + l, sizeof j->why - l, " (gave up after %d attempts)", j->attempts);
    return;
  }
  double wait = (o->backoff > 0 ? o->backoff : 1.0);
  for (int k = 1; k < j->attempts && wait < 60; k++) wait *= 2;
  j->not_before = now + (wait < 60 ? wait : 60);
  j->state = J_PENDING;
}

/* a transfer ended: decide between done, retry and failure */
static void finish(job *j, CURLcode res, const sr_fetch_opts *o, double now) {
  curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
  fclose(j->fp);
  j->fp = NULL;
  j->attempts++;
  long st = j->status;
  if (res != CURLE_OK) {
    snprintf(j->why, sizeof j->why, "%s: %s", j->url, j->curl_error[0] ? j->curl_error : curl_easy_strerror(res));
    if (res == CURLE_WRITE_ERROR || res == CURLE_URL_MALFORMAT || res == CURLE_UNSUPPORTED_PROTOCOL) j->state = J_FAILED;
    else retry(j, o, now);
    return;
  }
  if (st == 416) {                 /* nothing after our offset: the .part may be whole */
    j->expected = j->offset;
  } else if (st >= 400 || st < 200 || st >= 300) {
    snprintf(j->why, sizeof j->why, "%s: HTTP %ld", j->url, st);
    if (st >= 500 || st == 408 || st == 429) retry(j, o, now);
    else j->state = J_FAILED;
    if (j->state == J_FAILED && sr_file_size(j->part) == 0) remove(j->part);
    return;
  }
  long long size = sr_file_size(j->part);
  if (j->expected >= 0 && size < j->expected) {
    snprintf(j->why, sizeof j->why, "%s: got %lld of %lld bytes", j->url, size, j->expected);
    retry(j, o, now);
    return;
  }
  if (o->check_shard) {
    char err[1024];
    if (sr_shard_peek(j->part, err, sizeof err) < 0) {
      snprintf(j->why, sizeof j->why, "%s", err);
      if (strstr(err, "truncated")) {
        retry(j, o, now);
      } else {                     /* a wrong header or excess bytes will not mend: start over */
        remove(j->part);
        if (st == 416) retry(j, o, now);
        else j->state = J_FAILED;
      }
      return;
    }
  }
  if (rename(j->part, j->path) != 0) {
    snprintf(j->why, sizeof j->why, "%s: cannot rename into place (%s)", j->path, strerror(errno));
    j->state = J_FAILED;
    return;
  }
  j->expected = size;
  j->state = J_DONE;
}

static void human(char *buf, size_t n, double bytes) {
  const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) { bytes /= 1000; u++; }
  snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

static void progress(const sr_fetch_opts *o, job *jobs, int n, double t0, double now, double *rate,
                     double *last_t, long long *last_bytes, int final) {
  long long have = 0, total = 0;
  int done = 0, unknown = 0;
  for (int i = 0; i < n; i++) {
    job *j = &jobs[i];
    long long b = j->state == J_DONE ? j->expected : j->state == J_ACTIVE ? j->offset + j->received : 0;
    have += b;
    if (j->expected >= 0) total += j->expected;
    else unknown = 1;
    done += j->state == J_DONE;
  }
  double dt = now - *last_t;
  if (dt > 0) {
    double r = (double)(have - *last_bytes) / dt;
    *rate = *rate < 0 ? r : 0.7 * *rate + 0.3 * r;
  }
  *last_t = now;
  *last_bytes = have;
  char hb[32], tb[32], rb[32], eta[32] = "?";
  human(hb, sizeof hb, (double)have);
  human(tb, sizeof tb, (double)total);
  human(rb, sizeof rb, *rate > 0 ? *rate : 0);
  if (!unknown && *rate > 0) {
    long s = (long)((double)(total - have) / *rate);
    snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  }
  int tty = isatty(fileno(o->progress));
  if (final)
    fprintf(o->progress, "%sfetch: %d/%d files, %s in %.1f s\n", tty ? "\r\033[K" : "", done, n, hb, now - t0);
  else
    fprintf(o->progress, "%sfetch: %d/%d files, %s of %s%s, %s/s, ETA %s%s", tty ? "\r\033[K" : "", done, n,
            hb, tb, unknown ? "+" : "", rb, eta, tty ? "" : "\n");
  fflush(o->progress);
}

int sr_fetch(const sr_fetch_opts *o, char *err, size_t errlen) {
  if (sr_mkdir_p(o->out, err, errlen) != 0) return -1;
  job *jobs = calloc((size_t)o->nfiles, sizeof *jobs);
  if (!jobs) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    snprintf(err, errlen, "libcurl failed to initialise");
    free(jobs);
    return -1;
  }
  CURLM *multi = curl_multi_init();
  int limit = o->jobs > 0 ? o->jobs : 4, active = 0, left = 0;
  size_t bl = strlen(o->base_url);
  for (int i = 0; i < o->nfiles; i++) {
    job *j = &jobs[i];
    j->name = o->names[i];
    j->expected = -1;
    snprintf(j->url, sizeof j->url, "%s%s%s", o->base_url, bl && o->base_url[bl - 1] == '/' ? "" : "/", j->name);
    sr_path_join(j->path, sizeof j->path, o->out, j->name);
    snprintf(j->part, sizeof j->part, "%s.part", j->path);
    char e2[1024];
    if (sr_file_exists(j->path) && (!o->check_shard || sr_shard_peek(j->path, e2, sizeof e2) >= 0)) {
      j->state = J_DONE;                /* already in place */
      j->expected = sr_file_size(j->path);
    } else {
      if (sr_file_exists(j->path)) remove(j->path);     /* a bad file under the final name */
      j->state = J_PENDING;
      left++;
    }
  }
  double t0 = sr_monotonic_s(), last_print = t0, rate = -1, last_t = t0;
  long long last_bytes = 0;
  while (left > 0) {
    double now = sr_monotonic_s();
    for (int i = 0; i < o->nfiles && active < limit; i++)
      if (jobs[i].state == J_PENDING && jobs[i].not_before <= now) {
        if (start(multi, &jobs[i], o) == 0) active++;
        else left--;
      }
    int running;
    curl_multi_perform(multi, &running);
    CURLMsg *m;
    int queued;
    while ((m = curl_multi_info_read(multi, &queued))) {
      if (m->msg != CURLMSG_DONE) continue;
      job *j;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
      CURLcode res = m->data.result;
      curl_multi_remove_handle(multi, m->easy_handle);
      finish(j, res, o, sr_monotonic_s());
      curl_easy_cleanup(j->easy);
      j->easy = NULL;
      active--;
      if (j->state == J_DONE || j->state == J_FAILED) left--;
    }
    if (left > 0) curl_multi_poll(multi, NULL, 0, 100, NULL);
    now = sr_monotonic_s();
    int tty = o->progress && isatty(fileno(o->progress));
    if (o->progress && now - last_print >= (tty ? 0.5 : 5.0)) {
      progress(o, jobs, o->nfiles, t0, now, &rate, &last_t, &last_bytes, 0);
      last_print = now;
    }
  }
  if (o->progress) progress(o, jobs, o->nfiles, t0, sr_monotonic_s(), &rate, &last_t, &last_bytes, 1);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  int failed = 0;
  size_t used = 0;
  err[0] = '\0';
  for (int i = 0; i < o->nfiles; i++)
    if (jobs[i].state == J_FAILED) {
      if (used < errlen) used += (size_t)snprintf(err + used, errlen - used, "%s%s: %s", failed ? "; " : "",
                                                  jobs[i].name, jobs[i].why);
      failed++;
    }
  free(jobs);
  return failed ? -1 : 0;
}
