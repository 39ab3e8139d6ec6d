/*
** data/fetch.h: download files over HTTP(S) with libcurl, for `speedrun data fetch`.
** Each file goes to DIR/NAME.part first: an interrupted transfer resumes from the .part's size
** with an HTTP Range request (and starts over if the server ignores the range); failures that
** may pass (connection cut, timeout, stall, HTTP 5xx/408/429) are retried with exponential
** back-off; HTTP 4xx fails at once. A finished file is checked (a speedrun shard header that
** matches the size, when asked) and only then renamed into place, so DIR never holds a partial
** file under its final name. Transfers run in parallel through one curl multi handle, at most
** `jobs` at a time. libcurl reads the proxy from the environment as curl does (http_proxy,
** https_proxy, ALL_PROXY, NO_PROXY).
*/
#ifndef SR_FETCH_H
#define SR_FETCH_H

#include <stddef.h>  /* defines: size_t */
#include <stdio.h>   /* defines: FILE */

typedef struct sr_fetch_opts {
  const char *base_url;      /* file i is base_url/names[i] */
  const char *out;           /* destination folder (created) */
  char *const *names;
  int nfiles;
  int jobs;                  /* parallel transfers; <= 0: 4 */
  int retries;               /* further attempts per file after the first; < 0: 5 */
  double backoff;            /* seconds before the first retry, doubling (at most 60); <= 0: 1 */
  long stall_seconds;        /* abort a transfer that moves < 1 kB/s for this long; <= 0: 60 */
  long connect_timeout;      /* seconds; <= 0: 30 */
  int check_shard;           /* verify the speedrun header against the size before the rename */
  FILE *progress;            /* progress lines (bytes, rate, ETA); NULL: quiet */
} sr_fetch_opts;

/* 0 when every file is in place (fetched now or already there), else -1 with a message listing
** the files that failed and why */
int sr_fetch(const sr_fetch_opts *o, char *err, size_t errlen);

#endif
