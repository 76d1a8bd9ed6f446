package dev.gmem.cli;

import picocli.CommandLine;

/** A fraction on the command line: "40%", "40" (percent) or "0.4". */
final class Percent implements CommandLine.ITypeConverter<Double> {
    @Override
    public Double convert(String value) {
        String v = value.strip();
        try {
            double f = v.endsWith("%")
                    ? Double.parseDouble(v.substring(0, v.length() - 1)) / 100
                    : Double.parseDouble(v) > 1 ? Double.parseDouble(v) / 100 : Double.parseDouble(v);
            if (!(f >= 0 && f <= 1))
                throw new CommandLine.TypeConversionException("'" + value + "' is not between 0% and 100%");
            return f;
        } catch (NumberFormatException e) {
            throw new CommandLine.TypeConversionException("'" + value + "' is not a percentage (examples: 40%, 0.4)");
        }
    }
}
