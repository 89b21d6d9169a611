// The data room's front door: datasets from IDX, CSV and NPY files, Game of
// Life boards, minibatching and normalisation.
#pragma once

#include "pare/data/batcher.h"
#include "pare/data/csv.h"
#include "pare/data/dataset.h"
#include "pare/data/idx.h"
#include "pare/data/life.h"
#include "pare/data/normalize.h"
#include "pare/data/npy.h"
