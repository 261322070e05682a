// Package jobrun runs tcsctl's long jobs (resync, transform, backfill,
// export): batches of work on a pool of workers under a rate limit, with a
// progress bar on a terminal and a checkpoint file, so that a job stopped by
// Ctrl-C or a failure resumes where it stopped. A Runner never cuts a batch
// off half way: on Ctrl-C it lets the batches started finish, saves the
// checkpoint and returns ErrInterrupted.
//
// The checkpoint's token is the job's own (a catalog page token, an index
// into a list, a line number): the Runner moves it past the longest run of
// finished batches from the start, so work done out of order is never
// skipped on resume, only possibly redone — the jobs' writes are
// idempotent.
package jobrun
