# bench/plot.gp: the chart of `make bench` — requests/s (Spacer and its ceiling) and p99 per
# scenario, from bench/results/latest.dat (written by bench/report.py).
#   gnuplot -e "datafile='bench/results/latest.dat'; outfile='bench/results/latest.png'" bench/plot.gp
if (!exists("datafile")) datafile = 'bench/results/latest.dat'
if (!exists("outfile")) outfile = 'bench/results/latest.png'

set terminal pngcairo size 1800,900 font "DejaVu Sans,10"
set output outfile
set multiplot layout 2,1 title "Spacer benchmark (make bench)" font ",13"

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set logscale y
set key outside top center horizontal
set xtics nomirror font ",8"
set datafile missing "0"

set title "Requests per second (log scale)"
set ylabel "requests/s"
plot datafile using 2:xtic(1) title "Spacer (nginx rows: nginx)" lc rgb "#1f77b4", \
     '' using ($3 > 0 ? $3 : 1/0) title "ceiling (nginx, pgbench, bcrypt)" lc rgb "#bbbbbb"

set title "p99 latency (log scale)"
set ylabel "ms"
plot datafile using 4:xtic(1) title "p99" lc rgb "#d62728", \
     '' using ($5 > 0 ? $5 : 1/0) title "read target at 32 conns: 2 x nginx p99 (database reads: 2 x max(nginx p99, pgbench p99))" lc rgb "#2ca02c"

unset multiplot
