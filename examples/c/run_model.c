/* Run a graph file through the C library ember compiled from it, without Python.
 *
 *   python -m ember.runtime compile digits.ember -o libmodel.so --sizes batch=1
 *   cc -O2 -I. -o run_model examples/c/run_model.c -L. -lmodel -lm -Wl,-rpath,'$ORIGIN'
 *   ./run_model digits.ember [input0.bin ...] [--entry E] [--threads T] [--bench N]
 *               [--callers C]
 *
 * Each input is read from a raw file of its dtype and shape (numpy's `x.tofile(path)`), or,
 * when none is given, filled with sin(0.1 * i). The outputs are printed, one line of values
 * each. --bench N times N calls after a warm-up and prints the best and the median call.
 * --callers C (with --bench) then has C threads call the model at once, N calls each, every
 * call into its own output buffers checked against the first call's outputs, and prints the
 * calls per second of all of them together (the library is thread-safe).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

static int64_t count_of(const int64_t *dims, int ndim) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= dims[d];
    return n;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_value(const char *dtype, const void *data, int64_t i) {
    if (!strcmp(dtype, "float32")) printf("%.9g", ((const float *)data)[i]);
    else if (!strcmp(dtype, "float64")) printf("%.17g", ((const double *)data)[i]);
    else if (!strcmp(dtype, "int64")) printf("%lld", (long long)((const int64_t *)data)[i]);
    else if (!strcmp(dtype, "int32")) printf("%d", ((const int32_t *)data)[i]);
    else if (!strcmp(dtype, "bool")) printf("%d", ((const unsigned char *)data)[i]);
    else printf("?");
}

static void fill(const char *dtype, void *data, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = sin(0.1 * (double)i);
        if (!strcmp(dtype, "float32")) ((float *)data)[i] = (float)v;
        else if (!strcmp(dtype, "float64")) ((double *)data)[i] = v;
        else if (!strcmp(dtype, "int64")) ((int64_t *)data)[i] = i % 7;
        else if (!strcmp(dtype, "int32")) ((int32_t *)data)[i] = (int32_t)(i % 7);
        else ((unsigned char *)data)[i] = (unsigned char)(i % 2);
    }
}

/* One caller of --callers: its own output buffers, the shared inputs and model. */
typedef struct {
    model_t *model;
    int entry, n_in, n_out;
    void **inputs, **outputs, **expected;
    size_t *out_bytes;
    long calls;
    int failed;
} caller_t;

static void *call_repeatedly(void *arg) {
    caller_t *c = arg;
    for (long r = 0; r < c->calls && !c->failed; r++) {
        if (model_run_entry(c->model, c->entry, (const void *const *)c->inputs, c->n_in,
                            c->outputs, c->n_out) != MODEL_OK)
            c->failed = 1;
        for (int i = 0; i < c->n_out && !c->failed; i++)
            if (memcmp(c->outputs[i], c->expected[i], c->out_bytes[i])) c->failed = 2;
    }
    return NULL;
}

/* Calls per second of `callers` threads calling at once, `calls` calls each; -1 on a failed
 * or wrong call. */
static double run_callers(model_t *model, int entry, void **inputs, int n_in, void **expected,
                          int n_out, int callers, long calls) {
    int64_t dims[32];
    caller_t *all = calloc(callers, sizeof *all);
    pthread_t *threads = calloc(callers, sizeof *threads);
    size_t *out_bytes = calloc(n_out + 1, sizeof *out_bytes);
    for (int i = 0; i < n_out; i++) {
        int ndim = model_output_shape(entry, i, dims);
        out_bytes[i] = (size_t)count_of(dims, ndim) * model_output_itemsize(i);
    }
    for (int k = 0; k < callers; k++) {
        caller_t *c = &all[k];
        c->model = model, c->entry = entry, c->n_in = n_in, c->n_out = n_out;
        c->inputs = inputs, c->expected = expected, c->out_bytes = out_bytes;
        c->outputs = calloc(n_out + 1, sizeof *c->outputs);
        for (int i = 0; i < n_out; i++) c->outputs[i] = aligned_alloc(64, out_bytes[i] + 64);
        c->calls = calls / 10 + 10;  /* the warm-up */
        call_repeatedly(c);
        c->calls = calls;
    }
    double start = now_us();
    for (int k = 0; k < callers; k++) pthread_create(&threads[k], NULL, call_repeatedly, &all[k]);
    for (int k = 0; k < callers; k++) pthread_join(threads[k], NULL);
    double seconds = (now_us() - start) * 1e-6;
    int failed = 0;
    for (int k = 0; k < callers; k++) {
        failed |= all[k].failed;
        for (int i = 0; i < n_out; i++) free(all[k].outputs[i]);
        free(all[k].outputs);
    }
    free(all), free(threads), free(out_bytes);
    return failed ? -1.0 : (double)callers * calls / seconds;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    const char *files[64];
    int n_files = 0, entry = 0, threads = 1, callers = 0;
    long bench = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--bench") && a + 1 < argc) bench = atol(argv[++a]);
        else if (!strcmp(argv[a], "--callers") && a + 1 < argc) callers = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--entry") && a + 1 < argc) entry = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) threads = atoi(argv[++a]);
        else if (!path) path = argv[a];
        else if (n_files < 64) files[n_files++] = argv[a];
    }
    if (!path) {
        fprintf(stderr, "usage: %s MODEL.ember [INPUT.bin ...] [--entry E] [--threads T] "
                        "[--bench N] [--callers C]\n", argv[0]);
        return 2;
    }
    model_t *model;
    int code = model_open(path, &model);
    if (code != MODEL_OK) {
        fprintf(stderr, "error %d: %s\n", code, model_last_error());
        return 1;
    }
    if (threads > 1) model_set_threads(threads);
    int n_in = model_input_count(), n_out = model_output_count();
    if (n_files && n_files != n_in) {
        fprintf(stderr, "the model takes %d inputs, %d files given\n", n_in, n_files);
        return 2;
    }
    void **inputs = calloc(n_in + 1, sizeof *inputs), **outputs = calloc(n_out + 1, sizeof *outputs);
    int64_t dims[32];
    for (int i = 0; i < n_in; i++) {
        int ndim = model_input_shape(entry, i, dims);
        if (ndim < 0) {
            fprintf(stderr, "%s\n", model_last_error());
            return 2;
        }
        int64_t n = count_of(dims, ndim);
        size_t bytes = (size_t)n * model_input_itemsize(i);
        inputs[i] = aligned_alloc(64, bytes + 64);
        if (n_files) {
            FILE *f = fopen(files[i], "rb");
            if (!f || fread(inputs[i], 1, bytes, f) != bytes) {
                fprintf(stderr, "%s: cannot read %zu bytes for input %s\n", files[i], bytes,
                        model_input_name(i));
                return 2;
            }
            fclose(f);
        } else {
            fill(model_input_dtype(i), inputs[i], n);
        }
    }
    for (int i = 0; i < n_out; i++) {
        int ndim = model_output_shape(entry, i, dims);
        outputs[i] = aligned_alloc(64, (size_t)count_of(dims, ndim) * model_output_itemsize(i) + 64);
    }
    code = model_run_entry(model, entry, (const void *const *)inputs, n_in, outputs, n_out);
    if (code != MODEL_OK) {
        fprintf(stderr, "error %d: %s\n", code, model_last_error());
        return 1;
    }
    for (int i = 0; i < n_out; i++) {
        int ndim = model_output_shape(entry, i, dims);
        printf("output %d %s %s [", i, model_output_name(i), model_output_dtype(i));
        for (int d = 0; d < ndim; d++) printf(d ? ", %lld" : "%lld", (long long)dims[d]);
        printf("]\n");
        int64_t n = count_of(dims, ndim);
        for (int64_t k = 0; k < n; k++) {
            if (k) putchar(' ');
            print_value(model_output_dtype(i), outputs[i], k);
        }
        putchar('\n');
    }
    if (bench > 0) {
        double *times = malloc(bench * sizeof *times);
        for (long r = 0; r < bench / 10 + 10; r++)
            model_run_entry(model, entry, (const void *const *)inputs, n_in, outputs, n_out);
        for (long r = 0; r < bench; r++) {
            double start = now_us();
            model_run_entry(model, entry, (const void *const *)inputs, n_in, outputs, n_out);
            times[r] = now_us() - start;
        }
        qsort(times, bench, sizeof *times, compare);
        printf("bench %ld calls: best %.2f us, median %.2f us\n", bench, times[0],
               times[bench / 2]);
        free(times);
        if (callers > 0) {
            double rate = run_callers(model, entry, inputs, n_in, outputs, n_out, callers, bench);
            if (rate < 0) {
                fprintf(stderr, "a caller's call failed or gave other outputs\n");
                return 1;
            }
            printf("callers %d: %.0f calls/s\n", callers, rate);
        }
    }
    for (int i = 0; i < n_in; i++) free(inputs[i]);
    for (int i = 0; i < n_out; i++) free(outputs[i]);
    free(inputs);
    free(outputs);
    model_close(model);
    return 0;
}
