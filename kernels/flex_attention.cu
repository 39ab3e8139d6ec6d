/*
** flex_attention.cu: flex attention on cuda (block masks, block-masked flash attention). The
** kernels come in step 2 of issue 16; until then every launcher reports that the row is missing.
*/
#include "common.cuh"  // defines: SR_CUDA_TRY, sr_errf

extern "C" const char *sr_cuda_flex_block_mask(const sr_kcall *c) { (void)c; return sr_errf("flex attention is not built for cuda yet"); }
extern "C" const char *sr_cuda_flex_block_mask_lists(const sr_kcall *c) { (void)c; return sr_errf("flex attention is not built for cuda yet"); }
extern "C" const char *sr_cuda_flex_attention(const sr_kcall *c) { (void)c; return sr_errf("flex attention is not built for cuda yet"); }
extern "C" const char *sr_cuda_flex_attention_backward(const sr_kcall *c) { (void)c; return sr_errf("flex attention is not built for cuda yet"); }
