/* pth: import of PyTorch state_dicts written by torch.save, in both of its formats.
 *
 *  - zip (torch >= 1.6 default): a zip archive whose single top folder (its name varies) holds
 *    data.pkl, data/<key> (one raw little-endian storage per key) and version; read with libzip,
 *    stored or compressed entries alike.
 *  - legacy (_use_new_zipfile_serialization=False): back-to-back pickles of the magic number
 *    0x1950a86a20f9469cfc6c, the protocol version (1001), sys_info, the data, and the sorted list
 *    of storage keys; then each storage as an int64 element count and its raw bytes.
 *
 * The data pickle goes through the restricted interpreter in pickle.c, so a file can name only
 * OrderedDict, the tensor rebuild functions and storage types. Tensors may share storages and
 * have offsets and strides; each is materialised as a contiguous row-major copy (float32 from
 * float32/float16/bfloat16/float64 storages, int64 from integer and bool storages). Every index
 * a tensor touches is checked against the storage's real size first.
 *
 * Key handling (prefix stripping, the DenseNet fix) and the SHA-256 name check live in
 * tensor_dict.c (td_load), which is what callers normally use.
 */
#ifndef FERC_PTH_H
#define FERC_PTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/tensor_dict.h"

/* True when buf starts like a torch file of either format ('PK\3\4' or a pickle of protocol 2..5). */
bool pth_is_torch(const uint8_t *buf, size_t size);

/* Parses a whole .pth file held in buf (not taken) into d (which must be empty).
 * nested_key: take this entry of a checkpoint dict; NULL: the top-level dict if it holds
 * tensors, else its 'state_dict' or 'model' entry. `name` is used in messages. */
int pth_parse(tensor_dict *d, const uint8_t *buf, size_t size, const char *name, const char *nested_key);

/* Reads a file and parses it (no key handling, no hash check). */
int pth_read(tensor_dict *d, const char *path, const char *nested_key);

#endif
