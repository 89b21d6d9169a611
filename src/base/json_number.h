// Whole numbers read from parsed JSON, checked before they are converted.
//
// nlohmann::json's get<int>() or value("n", 0) of a number that is a float
// out of the integer's range (a file holding "n": 1e300) is undefined
// behaviour, not an exception; a file from outside may hold anything. Every
// count a reader takes from JSON goes through here. Templates on the JSON
// type (nlohmann::json), so base needs no JSON library of its own.
#pragma once

#include <cstdint>
#include <string>

#include "pare/base/error.h"

namespace pare {

// Whether v is an integer in [lo, hi] (lo <= hi), for readers that word
// their own message; the range is checked before any narrowing.
template <class Json>
bool is_whole_number(const Json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned())
    return v.template get<uint64_t>() <= static_cast<uint64_t>(hi) &&
           (lo <= 0 || v.template get<uint64_t>() >= static_cast<uint64_t>(lo));
  if (v.is_number_integer()) return v.template get<int64_t>() >= lo && v.template get<int64_t>() <= hi;
  return false;
}

// v as an integer in [lo, hi]; raises Error "<what> is <v>, not a whole
// number in [lo, hi]" for anything else (a float, a string, out of range).
template <class Json>
int64_t whole_number(const Json& v, int64_t lo, int64_t hi, const std::string& what) {
  if (!is_whole_number(v, lo, hi))
    fail(what, " is ", v.dump().substr(0, 40), ", not a whole number in [", lo, ", ", hi, "]");
  return v.template get<int64_t>();
}

// object[key] as whole_number(), or `absent` when the object has no `key`.
template <class Json>
int64_t whole_number_or(const Json& object, const char* key, int64_t absent, int64_t lo, int64_t hi,
                        const std::string& what) {
  if (!object.is_object() || !object.contains(key)) return absent;
  return whole_number(object[key], lo, hi, what + " \"" + key + "\"");
}

}  // namespace pare
