/* Tile products of attention: fastcore's micro-kernel (csrc/attention/tiles.h) beside
 * OpenBLAS sgemm as scipy.linalg.cython_blas calls it (scipy_sgemm_ of scipy's bundled
 * OpenBLAS), on the 64 x 64 x 64 tiles of the forward (Q K^T with k transposed
 * panel-major, and P V accumulating).  CPU time, one thread.
 *
 *   gcc -O3 -std=c11 -fno-math-errno -mavx2 -mfma -fopenmp -Icsrc bench/attention_tile_gemm.c \
 *       csrc/core/fc_status.c csrc/core/fc_pool.c -o /tmp/tile_gemm -ldl -lm
 *   OPENBLAS_NUM_THREADS=1 /tmp/tile_gemm $(python -c "import glob, os, scipy; \
 *       print(glob.glob(os.path.join(os.path.dirname(scipy.__file__), '..', 'scipy.libs', 'libscipy_openblas*.so'))[0])")
 */
#include <stdio.h>
#include <time.h>
#include <dlfcn.h>
#include "attention/attention_forward_f32.c"
typedef void (*sgemm_t)(const char*, const char*, const int*, const int*, const int*, const float*,
                        const float*, const int*, const float*, const int*, const float*, float*, const int*);
static double now(void){struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t); return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc, char **argv){
    void *h = dlopen(argv[1], RTLD_NOW); sgemm_t sg = (sgemm_t)dlsym(h, "scipy_sgemm_");
    if(!sg){printf("no sgemm\n");return 1;}
    enum {D=64, BQ=64, BK=64};
    static float Q[BQ*D], K[BK*D], Kt[BK*D], C[BQ*BK], P[BQ*BK], V[BK*128], O[BQ*128];
    for(int i=0;i<BQ*D;i++){Q[i]=(float)((i*7)%13)/13.f; K[i]=(float)((i*5)%11)/11.f;}
    for(int i=0;i<BQ*BK;i++) P[i]=(float)((i*3)%17)/17.f;
    for(int i=0;i<BK*128;i++) V[i]=(float)((i*3)%19)/19.f;
    fc_att_transpose_tile(K, Kt, BK, D, 0);
    const long N = 100000; const double fl = 2.0*64*64*64;
    for (int rep=0; rep<3; rep++){
    double t=now();
    for(long n=0;n<N;n++){ fc_att_gemm_pk(BQ, BK, D, Q, D, Kt, C, BK, 0); __asm__ volatile(""::"r"(C):"memory"); }
    double a=now()-t; t=now();
    int m=64, nn=64, kk=D, ld=D, ldc=64; float one=1.f, zero=0.f;
    for(long n=0;n<N;n++){ sg("T","N",&m,&nn,&kk,&one,K,&ld,Q,&ld,&zero,C,&ldc); }
    double b=now()-t; t=now();
    for(long n=0;n<N;n++){ fc_att_gemm(BQ, 64, BK, P, BK, V, 64, O, 64, 1); __asm__ volatile(""::"r"(O):"memory"); }
    double c=now()-t; t=now();
    int dv=64, k2=BK, ldp=BK;
    for(long n=0;n<N;n++){ sg("N","N",&dv,&nn,&k2,&one,V,&dv,P,&ldp,&one,O,&dv); }
    double d=now()-t;
    printf("QK^T 64x64x64: own %.1f GFLOP/s, sgemm %.1f GFLOP/s | PV 64x64x64: own %.1f, sgemm %.1f\n",
           fl*N/a/1e9, fl*N/b/1e9, fl*N/c/1e9, fl*N/d/1e9);
    }
    return 0;
}
