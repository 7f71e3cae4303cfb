/* Views: new shape/strides/offset over the same storage, and copies to contiguous. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <string.h>

mn_tensor *mnt_view(mn_tensor *t, int ndim, const int64_t *shape, const int64_t *strides, int64_t offset) {
    __atomic_add_fetch(&t->storage->refcount, 1, __ATOMIC_RELAXED);
    return mn__tensor_struct(t->dtype, ndim, shape, strides, offset, t->storage);
}

/* Strides for viewing t as shape without copying, if the layout allows: walk the
 * old dims from the back in chunks that are contiguous among themselves; each
 * chunk must be covered exactly by a run of new dims. */
static bool reshape_strides(const mn_tensor *t, int nd, const int64_t *shape, int64_t *out) {
    if (mn_is_contiguous(t) || mn_numel(t) == 0) {
        mn__contiguous_strides(nd, shape, out);
        return true;
    }
    int view_d = nd - 1;
    int64_t base = t->strides[t->ndim - 1], tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->strides[d - 1] != tensor_numel * base)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                out[view_d] = view_numel * base;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                base = t->strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

mn_tensor *mnt_reshape(mn_tensor *t, int ndim, const int64_t *shape_in) {
    int64_t shape[MN_MAX_DIMS], known = 1;
    int infer = -1;
    if (ndim > MN_MAX_DIMS) mn_fatal("mn_reshape: %d dimensions (at most %d)", ndim, MN_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        shape[i] = shape_in[i];
        if (shape[i] == -1) {
            if (infer >= 0) mn_fatal("mn_reshape: more than one -1 in the target shape");
            infer = i;
        } else {
            known *= shape[i];
        }
    }
    int64_t numel = mn_numel(t);
    if (infer >= 0) shape[infer] = known ? numel / known : 0;
    if (mn__dims_numel(ndim, shape) != numel) {
        char a[96], b[96];
        mn_fatal("mn_reshape: cannot reshape %s (%lld elements) to %s", mn_shape_str(t, a),
                 (long long)numel, mn__dims_str(ndim, shape_in, b));
    }
    int64_t strides[MN_MAX_DIMS];
    if (reshape_strides(t, ndim, shape, strides)) return mnt_view(t, ndim, shape, strides, t->offset);
    mn_tensor *c = mnt_clone(t);
    mn__contiguous_strides(ndim, shape, strides);
    return mnt_view(c, ndim, shape, strides, 0);
}

mn_tensor *mnt_permute(mn_tensor *t, const int *perm) {
    int64_t shape[MN_MAX_DIMS], strides[MN_MAX_DIMS];
    bool seen[MN_MAX_DIMS] = {false};
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i] < 0 ? perm[i] + t->ndim : perm[i];
        if (p < 0 || p >= t->ndim || seen[p]) {
            char b[96];
            mn_fatal("mn_permute: invalid permutation for shape %s (entry %d = %d)", mn_shape_str(t, b), i,
                     perm[i]);
        }
        seen[p] = true;
        shape[i] = t->shape[p];
        strides[i] = t->strides[p];
    }
    return mnt_view(t, t->ndim, shape, strides, t->offset);
}

mn_tensor *mnt_transpose(mn_tensor *t, int axis0, int axis1) {
    int a = mn_norm_axis(t, axis0, "mn_transpose"), b = mn_norm_axis(t, axis1, "mn_transpose");
    int perm[MN_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return mnt_permute(t, perm);
}

mn_tensor *mnt_slice(mn_tensor *t, int axis, int64_t start, int64_t stop, int64_t step) {
    int a = mn_norm_axis(t, axis, "mn_slice");
    int64_t n = t->shape[a];
    if (step <= 0) mn_fatal("mn_slice: step must be positive (got %lld)", (long long)step);
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    if (start < 0) start = 0;
    if (stop > n) stop = n;
    if (start > n) start = n;
    int64_t len = stop > start ? (stop - start + step - 1) / step : 0;
    int64_t shape[MN_MAX_DIMS], strides[MN_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    shape[a] = len;
    strides[a] = t->strides[a] * step;
    return mnt_view(t, t->ndim, shape, strides, t->offset + start * t->strides[a]);
}

mn_tensor *mnt_expand(mn_tensor *t, int ndim, const int64_t *shape) {
    if (ndim < t->ndim) {
        char a[96], b[96];
        mn_fatal("mn_expand: cannot expand %s to fewer dimensions %s", mn_shape_str(t, a),
                 mn__dims_str(ndim, shape, b));
    }
    int64_t sh[MN_MAX_DIMS], st[MN_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t want = shape[i];
        if (i < lead) {
            sh[i] = want;
            st[i] = 0;
            continue;
        }
        int64_t have = t->shape[i - lead];
        if (want == -1) want = have;
        if (have == want) {
            sh[i] = have;
            st[i] = t->strides[i - lead];
        } else if (have == 1) {
            sh[i] = want;
            st[i] = 0;
        } else {
            char a[96], b[96];
            mn_fatal("mn_expand: cannot expand %s to %s (dim %d is %lld, not 1)", mn_shape_str(t, a),
                     mn__dims_str(ndim, shape, b), i, (long long)have);
        }
    }
    return mnt_view(t, ndim, sh, st, t->offset);
}

mn_tensor *mnt_unsqueeze(mn_tensor *t, int axis) {
    int a = axis < 0 ? axis + t->ndim + 1 : axis;
    if (a < 0 || a > t->ndim || t->ndim >= MN_MAX_DIMS) {
        char b[96];
        mn_fatal("mn_unsqueeze: axis %d out of range for shape %s", axis, mn_shape_str(t, b));
    }
    int64_t sh[MN_MAX_DIMS], st[MN_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) {
        if (i == a) {
            sh[i] = 1;
            st[i] = (j < t->ndim) ? t->strides[j] * t->shape[j] : 1;
        } else {
            sh[i] = t->shape[j];
            st[i] = t->strides[j];
            j++;
        }
    }
    return mnt_view(t, t->ndim + 1, sh, st, t->offset);
}

mn_tensor *mnt_squeeze(mn_tensor *t, int axis) {
    int a = mn_norm_axis(t, axis, "mn_squeeze");
    if (t->shape[a] != 1) {
        char b[96];
        mn_fatal("mn_squeeze: dim %d of shape %s is not 1", axis, mn_shape_str(t, b));
    }
    int64_t sh[MN_MAX_DIMS], st[MN_MAX_DIMS];
    for (int i = 0, j = 0; i < t->ndim; i++) {
        if (i == a) continue;
        sh[j] = t->shape[i];
        st[j] = t->strides[i];
        j++;
    }
    return mnt_view(t, t->ndim - 1, sh, st, t->offset);
}

mn_tensor *mnt_clone(mn_tensor *t) {
    mn_tensor *out = mn_empty_dtype(t->dtype, t->ndim, t->shape);
    if (t->dtype == MN_I32) {
        int64_t n = mn_numel(t), idx[MN_MAX_DIMS] = {0};
        int32_t *o = mn_idata(out);
        const int32_t *base = (const int32_t *)t->storage->data;
        for (int64_t k = 0; k < n; k++) {
            int64_t off = t->offset;
            for (int d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
            o[k] = base[off];
            for (int d = t->ndim - 1; d >= 0; d--) {
                if (++idx[d] < t->shape[d]) break;
                idx[d] = 0;
            }
        }
        return out;
    }
    mnt_copy_(out, t);
    out->storage->version = 0;
    return out;
}

mn_tensor *mnt_contiguous(mn_tensor *t) {
    if (mn_is_contiguous(t)) return mn_autorelease(mn_retain(t));
    return mnt_clone(t);
}
