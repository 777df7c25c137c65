/* Dictionary-training kernels and their Node-API registration (native/training.c). */
#ifndef GB_TRAINING_H
#define GB_TRAINING_H

#include <node_api.h>
#include <stdint.h>

/* Adds sparseDot, kthLargest, adamUpdate, projectOutRows and normalizeRows to the addon's exports. */
void gb_training_register(napi_env env, napi_value exports);

#endif
