// The log-log SVG plot of spattn-compare (see loglog_plot.hpp).
#include "loglog_plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>

#include "spattn/error.hpp"

namespace spattn::bench {
namespace {

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

class Plot {
 public:
  Plot(std::ofstream& svg, const std::vector<PlotSeries>& series) : svg_(svg), series_(series) {
    for (const PlotSeries& s : series)
      for (const auto& [n, t] : s.points) {
        nmin_ = std::min(nmin_, n), nmax_ = std::max(nmax_, n);
        tmin_ = std::min(tmin_, t), tmax_ = std::max(tmax_, t);
        if (std::find(ns_.begin(), ns_.end(), n) == ns_.end()) ns_.push_back(n);
      }
    std::sort(ns_.begin(), ns_.end());
    lx0_ = std::log10(nmin_ / 1.25), lx1_ = std::log10(nmax_ * 1.25);
    ly0_ = std::floor(std::log10(tmin_ / 1.5)), ly1_ = std::ceil(std::log10(tmax_ * 1.5));
  }

  void frame() {
    svg_ << "<defs><clipPath id=\"plot\"><rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw_
         << "\" height=\"" << ph_ << "\"/></clipPath></defs>\n";
    svg_ << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw_ << "\" height=\"" << ph_
         << "\" fill=\"none\" stroke=\"black\"/>\n";
    svg_ << "<text x=\"" << L + pw_ / 2 << "\" y=\"" << H - 15
         << "\" text-anchor=\"middle\">sequence length N (log)</text>\n";
    svg_ << "<text transform=\"translate(20," << T + ph_ / 2
         << ") rotate(-90)\" text-anchor=\"middle\">ms per step (log)</text>\n";
  }

  // y: every decade, plus 2x and 5x when the range is short; x: every N.
  void ticks() {
    const bool fine = ly1_ - ly0_ <= 3;
    for (double e = ly0_; e <= ly1_ + 1e-9; e += 1)
      for (double m : {1.0, 2.0, 5.0}) {
        if (m != 1.0 && !fine) continue;
        const double t = m * std::pow(10.0, e);
        if (std::log10(t) > ly1_ + 1e-9) continue;
        svg_ << "<line x1=\"" << L << "\" y1=\"" << Y(t) << "\" x2=\"" << L + pw_ << "\" y2=\"" << Y(t)
             << "\" stroke=\"#ddd\"/>\n<text x=\"" << L - 6 << "\" y=\"" << Y(t) + 4 << "\" text-anchor=\"end\">"
             << fmt("%g", t) << "</text>\n";
      }
    for (double n : ns_) {
      const int64_t ni = static_cast<int64_t>(n);
      const std::string label = ni % 1024 == 0 ? std::to_string(ni / 1024) + "K" : std::to_string(ni);
      svg_ << "<line x1=\"" << X(n) << "\" y1=\"" << T << "\" x2=\"" << X(n) << "\" y2=\"" << T + ph_
           << "\" stroke=\"#ddd\"/>\n<text x=\"" << X(n) << "\" y=\"" << T + ph_ + 18 << "\" text-anchor=\"middle\">"
           << label << "</text>\n";
    }
  }

  // Guides: N^2 through the first point of guide_n2_from, N^1 through the
  // fastest point at the smallest N.
  void guides(const std::string& guide_n2_from) {
    std::optional<std::pair<double, double>> lowest;
    for (const PlotSeries& s : series_) {
      if (s.points.empty()) continue;
      const auto first = *std::min_element(s.points.begin(), s.points.end());
      if (s.name == guide_n2_from) guide(first.first, first.second, 2.0, "slope N\u00b2");
      if (first.first == nmin_ && (!lowest || first.second < lowest->second)) lowest = first;
    }
    if (lowest) guide(lowest->first, lowest->second, 1.0, "slope N");
  }

  void lines_and_legend() {
    int li = 0;
    for (const PlotSeries& s : series_) {
      auto pts = s.points;
      std::sort(pts.begin(), pts.end());
      svg_ << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << s.color << "\" points=\"";
      for (const auto& [n, t] : pts) svg_ << X(n) << "," << Y(t) << " ";
      svg_ << "\"/>\n";
      for (const auto& [n, t] : pts)
        svg_ << "<circle cx=\"" << X(n) << "\" cy=\"" << Y(t) << "\" r=\"4\" fill=\"" << s.color << "\"><title>"
             << s.name << " N " << n << ": " << fmt("%.2f", t) << " ms</title></circle>\n";
      const double ly = T + 14 + 20 * li++;
      svg_ << "<line x1=\"" << L + pw_ + 16 << "\" y1=\"" << ly << "\" x2=\"" << L + pw_ + 44 << "\" y2=\"" << ly
           << "\" stroke-width=\"2\" stroke=\"" << s.color << "\"/><circle cx=\"" << L + pw_ + 30 << "\" cy=\"" << ly
           << "\" r=\"4\" fill=\"" << s.color << "\"/><text x=\"" << L + pw_ + 50 << "\" y=\"" << ly + 4 << "\">"
           << s.name << "</text>\n";
    }
    const double ly = T + 14 + 20 * li;
    svg_ << "<line x1=\"" << L + pw_ + 16 << "\" y1=\"" << ly << "\" x2=\"" << L + pw_ + 44 << "\" y2=\"" << ly
         << "\" stroke=\"#888\" stroke-dasharray=\"6,4\"/><text x=\"" << L + pw_ + 50 << "\" y=\"" << ly + 4
         << "\">N, N\u00b2 guides</text>\n";
  }

  static constexpr double W = 860, H = 560, L = 80, R = 200, T = 50, B = 60;

 private:
  double X(double n) const { return L + (std::log10(n) - lx0_) / (lx1_ - lx0_) * pw_; }
  double Y(double t) const { return T + ph_ - (std::log10(t) - ly0_) / (ly1_ - ly0_) * ph_; }

  void guide(double n0, double t0, double p, const char* label) {
    const double na = nmin_ / 1.25, nb = nmax_ * 1.25;
    const double ta = t0 * std::pow(na / n0, p), tb = t0 * std::pow(nb / n0, p);
    svg_ << "<line x1=\"" << X(na) << "\" y1=\"" << Y(ta) << "\" x2=\"" << X(nb) << "\" y2=\"" << Y(tb)
         << "\" stroke=\"#888\" stroke-dasharray=\"6,4\" clip-path=\"url(#plot)\"/>\n";
    const double tl = std::clamp(tb, std::pow(10.0, ly0_), std::pow(10.0, ly1_));
    const double nl = p > 0 ? std::min(nb, n0 * std::pow(tl / t0, 1.0 / p)) : nb;
    svg_ << "<text x=\"" << X(nl) - 4 << "\" y=\"" << Y(tl) + (tb > tl ? 14 : -6)
         << "\" text-anchor=\"end\" fill=\"#555\">" << label << "</text>\n";
  }

  std::ofstream& svg_;
  const std::vector<PlotSeries>& series_;
  const double pw_ = W - L - R, ph_ = H - T - B;
  double nmin_ = 1e300, nmax_ = 0, tmin_ = 1e300, tmax_ = 0;
  double lx0_ = 0, lx1_ = 1, ly0_ = 0, ly1_ = 1;
  std::vector<double> ns_;
};

}  // namespace

void write_loglog_plot(const std::string& path, const std::string& title, const std::vector<PlotSeries>& series,
                       const std::string& guide_n2_from) {
  std::ofstream svg(path);
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << Plot::W << "\" height=\"" << Plot::H
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"" << Plot::L << "\" y=\"28\" font-size=\"15\">" << title << "</text>\n";
  bool any = false;
  for (const PlotSeries& s : series) any |= !s.points.empty();
  if (!any) {
    svg << "<text x=\"" << Plot::L << "\" y=\"" << Plot::T + 40 << "\">no measurements</text>\n";
  } else {
    Plot plot(svg, series);
    plot.frame();
    plot.ticks();
    plot.guides(guide_n2_from);
    plot.lines_and_legend();
  }
  svg << "</svg>\n";
  if (!svg) throw Error("spattn-compare: cannot write '" + path + "'");
}

}  // namespace spattn::bench
