#include <gtest/gtest.h>
// placeholder: filled in by its issue
