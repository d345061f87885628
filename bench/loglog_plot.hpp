#pragma once
// A log-log line plot as SVG (spattn-compare --plot): one polyline with
// points per series, decade grid, dashed N and N^2 guides, a legend.
#include <string>
#include <utility>
#include <vector>

namespace spattn::bench {

struct PlotSeries {
  std::string name, color;
  std::vector<std::pair<double, double>> points;  // (N, ms)
};

// guide_n2_from: the series whose smallest-N point the N^2 guide goes through
// (dense flash); the N guide goes through the fastest point at the smallest N.
// Throws spattn::Error when path cannot be written.
void write_loglog_plot(const std::string& path, const std::string& title, const std::vector<PlotSeries>& series,
                       const std::string& guide_n2_from);

}  // namespace spattn::bench
